"""Run identity, verified checkpoints, merged results, arguments checked before any data, file modes,
tables with n / mean / sd / se."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import mnist_root, mnist_skip_reason

import hypercl
from hypercl.checkpoint import CheckpointError, atomic_write_text, clean_stale_tmp, load_checkpoint
from hypercl.cli import main
from hypercl.experiments import method_config
from hypercl.experiments.identity import RunConfig, identity_diff, run_identity
from hypercl.experiments.report import format_table, merge_loaded
from hypercl.experiments.runner import build_learner, summarize

DATA = mnist_root()
needs_mnist = pytest.mark.skipif(
    DATA is None, reason=mnist_skip_reason()
)
TINY = ["--iterations", "3", "--max-train-per-task", "64", "--max-test-per-task", "40", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def _tiny_learner():
    torch.manual_seed(0)
    model = hypercl.models.mlp(4, [8], 2, "relu")
    hnet = hypercl.HyperNetwork(hypercl.wrap(model), generator="lstm", chunk_size=16, hidden_size=8,
                                task_emb_dim=4, chunk_emb_dim=4)
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=8)
    X, Y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    learner.fit_task(0, (X, Y), iterations=2)
    return learner


# ------------------------------------------------------------------------------------------- checkpoint digest
def test_flipped_byte_in_tensor_data_is_refused(tmp_path):
    learner = _tiny_learner()
    marker = torch.full((257,), 1.2345678, dtype=torch.float32)
    path = tmp_path / "ck.pt"
    from hypercl.checkpoint import atomic_save

    atomic_save({**learner.state(), "marker": marker}, path)
    assert hypercl.ContinualLearner.load(path).learned_tasks == [0]  # intact: loads
    raw = bytearray(path.read_bytes())
    at = raw.find(marker.numpy().tobytes())
    assert at > 0
    raw[at + 100] ^= 0x01  # one bit of one float in the tensor data; torch.load alone does not notice
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["marker"][25] != marker[25]
    with pytest.raises(CheckpointError, match=r"ck\.pt is corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupt"):
        hypercl.ContinualLearner.load(path)


def test_checkpoint_without_digest_is_refused(tmp_path):
    learner = _tiny_learner()
    path = tmp_path / "old.pt"
    torch.save(learner.state(), path)  # no digest (an older hypercl)
    with pytest.raises(CheckpointError, match="no payload digest"):
        load_checkpoint(path)


def test_files_honour_the_umask_and_stale_tmp_is_cleaned(tmp_path):
    old = os.umask(0o022)
    try:
        learner = _tiny_learner()
        learner.save(tmp_path / "a.pt")
        atomic_write_text("{}", tmp_path / "r.json")
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.pt.{dead.pid}.abcd.tmp"
    live = tmp_path / f".a.pt.{os.getppid()}.abcd.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert clean_stale_tmp(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


# --------------------------------------------------------------------------------------------- run identity
def test_fingerprint_covers_every_setting():
    base = RunConfig.from_json(method_config("split_mnist", "hnet")).fingerprint()
    assert base == RunConfig.from_json(method_config("split_mnist", "hnet")).fingerprint()
    for kw in ({"quick": True}, {"iterations": 7}, {"lr": 2e-3}, {"beta": 0.5}, {"batch_size": 64},
               {"chunk_size": 1000}, {"val_size": 10}, {"hnet_init": "target_scale"}, {"max_train_per_task": 9}):
        other = RunConfig.from_json(method_config("split_mnist", "hnet", **kw)).fingerprint()
        assert other != base, kw
    cfg = RunConfig.from_json(method_config("split_mnist", "hnet")).to_json()
    cfg2 = RunConfig.from_json(method_config("split_mnist", "hnet", quick=True)).to_json()
    diff = identity_diff(run_identity(cfg, "cl1", 0), run_identity(cfg2, "cl1", 1))
    assert any(d.startswith("quick:") for d in diff) and any(d.startswith("train.iterations") for d in diff)
    assert any(d.startswith("seed:") for d in diff)
    with pytest.raises(dataclass_error()):
        RunConfig.from_json(method_config("split_mnist", "hnet")).method = "x"


def dataclass_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_new_config_fields_reach_the_library():
    cfg = RunConfig.from_json(method_config("split_mnist", "hnet")).to_json()
    assert cfg["hypernetwork"]["init"] == "von_oswald"
    assert method_config("split_mnist", "lstm_net")["hypernetwork"]["init"] == "target_scale"
    assert method_config("permuted_mnist", "hnet")["strategy"]["kwargs"]["lookahead"] is True
    grow = method_config("split_mnist", "lstm_net_grow", grow_new_task="fresh")
    assert grow["strategy"]["kwargs"]["new_task_weights"] == "fresh"
    assert method_config("split_mnist", "lstm_net_grow")["strategy"]["kwargs"]["new_task_weights"] == "copy"
    bench = SimpleNamespace(input_dim=4, total_classes=4, classes_per_task=2)
    small = dict(chunk_size=50, hidden_size=8, hnet_init="target_scale")
    for method, kw in (("lstm_net", small), ("hnet", {"chunk_size": 50, "hnet_init": "von_oswald"})):
        c = method_config("split_mnist", method, **kw)
        c["target"]["hidden"] = [8]
        learner = build_learner(c, bench, "cl1", 0, "cpu", False)
        assert learner.hnet.init == kw["hnet_init"]
    c = method_config("split_mnist", "lstm_net_grow", chunk_size=50, hidden_size=8, grow_new_task="fresh")
    c["target"]["hidden"] = [8]
    learner = build_learner(c, bench, "cl1", 0, "cpu", False)
    assert learner.strategy.config()["new_task_weights"] == "fresh"


# ---------------------------------------------------------------------------------------- statistics, tables
def _fake_run(seed, final, during, ti):
    return {"seed": seed, "scenarios": {"cl3": {
        "tasks": [0, 1], "rows": [0, 1], "matrix": [[during[0], None], [final, final]],
        "task_inference_matrix": [[1.0, None], [ti, ti]], "final_average": final, "during": during,
        "during_average": sum(during) / 2, "backward_transfer": 0.0}}, "params": {"target": 1, "model": 1,
                                                                                 "compression_ratio": 1.0}}


def test_standard_error_matches_a_direct_computation():
    finals = [0.71, 0.69, 0.74, 0.70]
    runs = [_fake_run(i, f, [0.9, 0.8 + i / 100], 0.5 + i / 10) for i, f in enumerate(finals)]
    st = summarize(runs, ["cl3"])["cl3"]["stats"]
    n = len(finals)
    mean = sum(finals) / n
    sd = math.sqrt(sum((f - mean) ** 2 for f in finals) / (n - 1))
    assert st["final"]["n"] == 4 and st["final"]["mean"] == pytest.approx(mean)
    assert st["final"]["std"] == pytest.approx(sd) and st["final"]["se"] == pytest.approx(sd / math.sqrt(n))
    tis = [0.5 + i / 10 for i in range(4)]
    assert st["task_inference"]["se"] == pytest.approx(statistics.stdev(tis) / 2)
    one = summarize(runs[:1], ["cl3"])["cl3"]["stats"]["final"]
    assert one["n"] == 1 and one["std"] is None and one["se"] is None


def test_table_shows_n_sd_se_final_during_and_marks_reduced_runs():
    runs = [_fake_run(i, 0.7 + i / 100, [0.9, 0.8], 0.6) for i in range(3)]
    res = {"benchmark": "split_mnist", "method": "hnet", "scenarios": ["cl3"], "fingerprint": "f" * 16,
           "reduced": True, "summary": summarize(runs, ["cl3"]), "runs": runs, "params": runs[0]["params"]}
    text = format_table([res], scenarios=["cl3"], with_paper=False, wide=True)
    assert "REDUCED RUN" in text and "HNET (reduced)" in text
    assert "CL3 final" in text and "CL3 during" in text and "CL3 task inference" in text
    assert "71.00 sd 1.00 se 0.58 (n=3)" in text
    single = {**res, "runs": runs[:1], "summary": summarize(runs[:1], ["cl3"]), "reduced": False}
    text1 = format_table([single], scenarios=["cl3"], with_paper=False, wide=True)
    assert "± 0.00" not in text1 and "70.00 (n=1)" in text1 and "REDUCED" not in text1
    # two copies of one identity with different seeds are merged by the table
    a = {**res, "runs": runs[:2], "summary": summarize(runs[:2], ["cl3"])}
    b = {**res, "runs": runs[2:], "summary": summarize(runs[2:], ["cl3"])}
    merged = merge_loaded([a, b])
    assert len(merged) == 1 and merged[0]["summary"]["cl3"]["n_seeds"] == 3


# ------------------------------------------------------------------------ CLI: bad arguments, before any data
BAD = [
    (["--iterations", "0"], "--iterations"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--beta", "-0.1"], "--beta"),
    (["--chunk-size", "100000000"], "--chunk-size"),
    (["--chunk-size", "0"], "--chunk-size"),
    (["--max-train-per-task", "0"], "--max-train-per-task"),
    (["--max-test-per-task", "0"], "--max-test-per-task"),
    (["--num-tasks", "3"], "--num-tasks"),
    (["--device", "foo"], "foo"),
    (["--device", "mps"], "mps"),
    (["--scenario", ""], "--scenario"),
    (["--method", ""], "--method"),
    (["--seeds", "0"], "--seeds"),
    (["--seed-offset", "-1"], "--seed-offset"),
    (["--val-size", "-1"], "--val-size"),
    (["--val-size", "64", "--max-train-per-task", "64"], "--val-size"),
    (["--hnet-init", "xavier"], "--hnet-init"),
    (["--grow-new-task", "zero"], "--grow-new-task"),
    (["--data-root", ""], "--data-root"),
    (["--fisher-samples", "0", "--method", "hnet_iwr"], "--fisher-samples"),
    (["--iterations", "3", "--epochs", "3"], "--epochs"),
]
if not torch.cuda.is_available():
    BAD.append((["--device", "cuda"], "cuda"))


def _run_cli(args, tmp_path, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYPERCL_DATA": str(tmp_path / "no-data-here"),
           **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "hypercl.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def _argv(extra, out):
    base = {"--benchmark": "split_mnist", "--method": "hnet", "--out": str(out)}
    keys = [extra[i] for i in range(0, len(extra), 2)]
    args = ["run"]
    for k, v in base.items():
        if k not in keys:
            args += [k, v]
    return args + ["--no-progress"] + extra


@pytest.mark.parametrize("extra,names", BAD, ids=[" ".join(b[0]) or "empty" for b in BAD])
def test_bad_argument_is_one_line_before_any_data(tmp_path, extra, names):
    out = tmp_path / "out"
    p = _run_cli(_argv(extra, out), tmp_path)
    assert p.returncode != 0
    err = p.stderr.strip()
    assert "Traceback" not in p.stderr and len(err.splitlines()) == 1, p.stderr
    assert names in err, err
    assert not (tmp_path / "no-data-here").exists()  # no data folder made, nothing downloaded
    assert not list(out.glob("checkpoints/*.pt"))


def test_bad_folders_are_one_line(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    for extra, names in ((["--out", str(f)], "is a file"), (["--data-root", str(f)], "is a file")):
        p = _run_cli(_argv(extra, tmp_path / "o"), tmp_path)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and names in p.stderr, p.stderr
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        p = _run_cli(_argv(["--out", str(ro)], tmp_path / "o"), tmp_path)
        assert p.returncode == 2 and "not writable" in p.stderr
    p = _run_cli(["table", str(tmp_path / "empty-dir-none")], tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr


# ---------------------------------------------------------------------- resume, merging, the same command twice
@needs_mnist
def test_quick_then_full_resume_and_changed_setting_are_refused(tmp_path, capsys):
    args = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl1", "--out", str(tmp_path)]
    assert main([*args, "--quick", *TINY]) == 0
    ck = next((tmp_path / "checkpoints").glob("*.pt"))
    before = ck.read_bytes()
    capsys.readouterr()
    # the full command with --resume: another identity -> refused before any data, naming the fields
    assert main([*args, "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another run" in err and "quick" in err and "train.iterations" in err
    assert main([*args, "--quick", *TINY, "--lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.001 -> 0.01" in err
    # the same command twice without --resume: refused, the finished checkpoint is kept
    assert main([*args, "--quick", *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err and ck.read_bytes() == before
    # a checkpoint with a flipped byte in tensor data: one line, not a traceback
    raw = bytearray(before)
    raw[len(raw) // 2] ^= 0xFF
    ck.write_bytes(bytes(raw))
    assert main([*args, "--quick", *TINY, "--resume"]) == 2
    err = capsys.readouterr().err
    assert ("corrupt" in err or "not a readable" in err) and len(err.strip().splitlines()) == 1


@needs_mnist
def test_two_seed_offsets_into_one_folder_are_merged(tmp_path, capsys):
    args = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "all", "--out", str(tmp_path),
            "--quick", *TINY]
    assert main([*args, "--seeds", "1"]) == 0
    assert main([*args, "--seed-offset", "1", "--seeds", "2"]) == 0
    files = sorted(tmp_path.glob("split_mnist_hnet_quick_*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["seeds"] == [0, 1, 2] and data["summary"]["cl3"]["n_seeds"] == 3
    assert data["reduced"] is True and data["fingerprint"] in files[0].name
    assert data["summary"]["cl1"]["stats"]["final"]["n"] == 3 and len(data["commands"]) == 2
    # another setting into the same folder: its own file, nothing overwritten
    assert main([*args, "--seeds", "1", "--lr", "0.002"]) == 0
    assert len(list(tmp_path.glob("split_mnist_hnet_quick_*.json"))) == 2
    capsys.readouterr()
    assert main(["table", str(tmp_path), "--no-paper"]) == 0
    out = capsys.readouterr().out
    assert "(n=3)" in out and "(n=1)" in out and "REDUCED RUN" in out


@needs_mnist
def test_val_size_holds_out_the_last_training_samples():
    from hypercl.data import get_benchmark

    full = get_benchmark("split_mnist", root=DATA, max_train_per_task=50, max_test_per_task=10)
    held = get_benchmark("split_mnist", root=DATA, max_train_per_task=50, max_test_per_task=10, val_size=8)
    for a, b in zip(full.tasks, held.tasks):
        assert len(b.y_train) == 42 and len(b.val[1]) == 8
        assert torch.equal(b.x_train, a.x_train[:42]) and torch.equal(b.val[0], a.x_train[42:])
        assert a.val is None
    perm = get_benchmark("permuted_mnist", root=DATA, num_tasks=2, max_train_per_task=30, max_test_per_task=5,
                         val_size=5)
    assert len(perm.tasks[1].y_train) == 25 and perm.tasks[1].val[0][:].shape[0] == 5


@pytest.mark.parametrize("argv", [
    ["ablation", "--kind", "beta", "--seeds", "0"],
    ["ablation", "--kind", "beta", "--values", ","],
    ["ablation", "--kind", "compression", "--iterations", "0"],
    ["ablation", "--kind", "beta", "--benchmark", "nope"],
    ["bench", "--steps", "0"],
    ["bench", "--device", "foo"],
    ["table"],
])
def test_other_commands_answer_bad_arguments_in_one_line(tmp_path, argv):
    p = _run_cli(argv, tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_bench_out_takes_a_folder(tmp_path, monkeypatch):
    import hypercl.bench as bench_mod

    seen = {}
    monkeypatch.setattr(bench_mod, "main", lambda args: seen.setdefault("out", args.out) and 0)
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    assert seen["out"] == tmp_path / "bench.json"


@needs_mnist
def test_replay_checkpoints_are_kept_apart_and_not_overwritten(tmp_path, capsys):
    args = ["run", "--benchmark", "split_mnist", "--method", "lwf", "--scenario", "cl1", "--out", str(tmp_path),
            "--quick", *TINY]
    assert main(args) == 0
    ck = next((tmp_path / "checkpoints").glob("split_mnist_lwf_*/*_seed0.pt"))
    before = ck.read_bytes()
    capsys.readouterr()
    assert main(args) == 2 and "pass --resume" in capsys.readouterr().err and ck.read_bytes() == before
    assert main([*args, "--lr", "0.01", "--resume"]) == 2
    assert "train.lr: 0.001 -> 0.01" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0


def test_device_name_names_the_cpu_kernel_path_and_threads():
    """Results files say which CPU kernel path and thread count ran them (both decide the digits); the path follows
    ``ATEN_CPU_CAPABILITY``."""
    code = ("import json, torch; from hypercl.devices import device_name, digits_environment; "
            "print(device_name(torch.device('cpu'))); print(json.dumps(digits_environment()))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    named, digits = out.splitlines()
    assert named.startswith("cpu (") and ", DEFAULT, " in named and named.endswith(", 1 threads)")
    assert json.loads(digits) == {"torch": torch.__version__, "threads": 1, "cpu_capability": "DEFAULT"}
    from hypercl.devices import device_name

    assert f", {torch.backends.cpu.get_cpu_capability()}, " in device_name(torch.device("cpu"))
