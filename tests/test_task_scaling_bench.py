"""The peak-memory counter and the long task-scaling rows of ``hypercl bench --task-scaling``."""

import json

import torch

from hypercl.bench import bench_long_task_scaling
from hypercl.cli import main
from hypercl.memory import PeakTensorMemory, peak_bytes

MB = 2**20


def test_peak_memory_counts_new_storages_once_and_releases_them():
    keep = torch.zeros(MB // 4)  # 1 MB that exists before: neither its views nor in-place ops on it count
    with PeakTensorMemory() as m:
        a = torch.ones(MB // 4)  # 1 MB
        b = torch.ones(2 * MB // 4)  # 2 MB
        view = b[: MB // 8]  # a view: no new memory
        keep.add_(1.0)  # in place on an old tensor
        keep_view = keep.view(2, -1)  # a view of an old tensor
        del a
        c = torch.ones(MB // 4)  # 1 MB, after a was freed
        del view, keep_view
    assert m.peak == 3 * MB  # a + b
    assert m.current == 3 * MB  # b + c
    del b, c
    assert m.current == 0


def test_peak_memory_sees_the_backward_pass():
    w = torch.randn(256, 256, requires_grad=True)
    x = torch.randn(64, 256)

    def step():
        (x @ w).relu().sum().backward()

    peak = peak_bytes(step, torch.device("cpu"))
    # forward output (64x256) and relu output, then grad of w (256x256, kept): at least w's gradient
    assert peak >= 256 * 256 * 4
    assert w.grad is not None


def test_long_task_scaling_rows_hold_the_memory_model():
    variants = (("hnet K=all", "hnet", {}),
                ("hnet K=1 online", "hnet", {"reg_tasks_per_step": 1, "reg_targets": "online"}),
                ("lstm_net_grow", "lstm_net_grow", {}))
    rows = bench_long_task_scaling("split_mnist", torch.device("cpu"), steps=1, warmup=0, tasks=(1, 3),
                                   variants=variants)
    by = {(r["variant"], r["task"]): r for r in rows}
    assert set(by) == {(v, t) for v, _, _ in variants for t in (1, 3)}
    n = by[("hnet K=all", 3)]["target_params"]
    stored = by[("hnet K=all", 3)]["regulariser_mb"] * MB
    # stored targets: the targets ((T-1) x N), their raw-space copy ((T-1) x P, padded to whole chunks of 42000) and
    # the raw-space weight gain², once (P): (T-1)(N + P) + P floats
    padded = -(-n // 42000) * 42000
    assert stored == (2 * (n + padded) + padded) * 4
    # online targets: one frozen copy of the hypernetwork, whatever T
    online = by[("hnet K=1 online", 3)]
    assert online["regulariser_mb"] * MB == online["hnet_params"] * 4
    assert by[("hnet K=all", 1)]["regulariser_mb"] == 0
    for r in rows:
        assert r["step_ms"] > 0 and r["step_peak_mb"] > 0 and r["ratio_vs_task1"] > 0 and r["step_n"] == 1
    # GROW adds per-task weights to the model, no regulariser
    assert by[("lstm_net_grow", 3)]["model_mb"] > by[("lstm_net_grow", 1)]["model_mb"]
    assert by[("lstm_net_grow", 3)]["regulariser_mb"] == 0


def test_bench_task_scaling_quick_writes_json_and_png(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "scaling.png"
    assert main(["bench", "--quick", "--task-scaling", "--out", str(out), "--png", str(png)]) == 0
    report = json.loads(out.read_text())
    assert {r["task"] for r in report["long_task_scaling"]} == {1, 3}
    assert png.stat().st_size > 1000
