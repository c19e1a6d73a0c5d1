"""The runner's after-fit hook ``(learner, task_id, task)`` and the validation-split results (``--val-size``)."""

import json
import os
from pathlib import Path

import pytest

from hypercl.cli import main
from hypercl.experiments import method_config
from hypercl.experiments.runner import build_benchmark, run_seed

DATA = os.environ.get("HYPERCL_DATA")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "MNIST" / "raw").is_dir(), reason="HYPERCL_DATA with MNIST/raw is not set"
)
SMALL = dict(iterations=2, max_train_per_task=40, max_test_per_task=20)


class _Crash(RuntimeError):
    pass


@needs_mnist
def test_after_fit_hook_sees_every_task_and_val_rows_survive_resume(tmp_path):
    cfg = method_config("split_mnist", "hnet", quick=True, val_size=8, **SMALL)
    bench = build_benchmark(cfg, DATA)
    calls = []

    def crash_after_two(learner, task_id, task):
        calls.append((task_id, len(learner.learned_tasks), task is bench.tasks[task_id], task.val is not None))
        if task_id == 2:
            raise _Crash  # the "kill": tasks 0 and 1 are checkpointed, task 2 is not

    with pytest.raises(_Crash):
        run_seed(cfg, bench, 0, ["cl1", "cl3"], checkpoint_dir=tmp_path, after_fit=crash_after_two)
    assert calls == [(0, 1, True, True), (1, 2, True, True), (2, 3, True, True)]
    calls.clear()
    out = run_seed(cfg, bench, 0, ["cl1", "cl3"], checkpoint_dir=tmp_path, resume=True,
                   after_fit=lambda lrn, t, task: calls.append(t))
    assert calls == [2, 3, 4]  # resumed after task 1: the hook runs for the tasks trained now
    for s in ("cl1", "cl3"):
        rows = out["val"][s]["rows"]
        assert [r["after_task"] for r in rows] == [0, 1, 2, 3, 4]  # the rows before the crash came from the checkpoint
        assert len(rows[-1]["accuracy"]) == 5 and 0 <= out["val"][s]["final_average"] <= 1
        assert 0 <= out["val"][s]["during_average"] <= 1
    assert "final_task_inference" in out["val"]["cl3"] and "final_task_inference" not in out["val"]["cl1"]
    # the test-set accuracy matrix holds test rows only (the val evaluation is never recorded there)
    assert len(out["scenarios"]["cl1"]["matrix"]) == 5


@needs_mnist
def test_val_results_in_the_json_only_with_val_size(tmp_path):
    base = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl1", "--quick", "--iterations",
            "2", "--max-train-per-task", "40", "--max-test-per-task", "20", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--val-size", "8"]) == 0
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    (a,), (b,) = sorted((tmp_path / "a").glob("*.json")), sorted((tmp_path / "b").glob("*.json"))
    run_a, run_b = json.loads(a.read_text())["runs"][0], json.loads(b.read_text())["runs"][0]
    assert len(run_a["val"]["cl1"]["rows"]) == 5 and "val" not in run_b
    assert a.name != b.name  # --val-size is part of the identity


@needs_mnist
def test_checkpoint_missing_an_entry_or_corrupt_is_one_line(tmp_path):
    import subprocess
    import sys

    from hypercl.checkpoint import atomic_save, load_checkpoint

    args = [sys.executable, "-m", "hypercl", "run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario",
            "cl1", "--quick", "--iterations", "2", "--max-train-per-task", "40", "--max-test-per-task", "20",
            "--no-progress", "--out", str(tmp_path), "--resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(args, env=env, capture_output=True, text=True).returncode == 0
    (ck,) = sorted((tmp_path / "checkpoints").glob("*.pt"))
    state = load_checkpoint(ck)
    del state["history"]
    atomic_save(state, ck)  # a valid digest, but not a complete learner state
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "lacks the entry" in r.stderr and ck.name in r.stderr
    raw = bytearray(ck.read_bytes())
    i = raw.find(b"data/0") + 200  # inside the first tensor's bytes
    raw[i] ^= 0xFF
    ck.write_bytes(bytes(raw))
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "corrupt" in r.stderr or "not a readable" in r.stderr
