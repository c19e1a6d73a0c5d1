"""Nothing lost, nothing silently wrong: frozen parameters in checkpoints, dtypes, the user's module mode, numeric
arguments, full disks, interrupts, the run lock, ``hypercl table`` on damaged files, messages. Each test fails
without its fix."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import hypercl
from hypercl.checkpoint import CheckpointError
from hypercl.cli import main

DATA = os.environ.get("HYPERCL_DATA")
needs_mnist = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "MNIST" / "raw").is_dir(), reason="HYPERCL_DATA with MNIST/raw is not set"
)
TINY = ["--iterations", "3", "--max-train-per-task", "64", "--max-test-per-task", "40", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- 1. frozen parameters in checkpoints
class FrozenStem(nn.Module):
    """A frozen random projection + frozen per-feature scale (a frozen backbone), then a trainable head."""

    def __init__(self, d_in=6, d_feat=5, k=3):
        super().__init__()
        self.stem = nn.Linear(d_in, d_feat)
        self.stem.requires_grad_(False)
        self.scale = nn.Parameter(torch.rand(d_feat) + 0.5, requires_grad=False)
        self.head = nn.Linear(d_feat, k)

    def forward(self, x):
        return self.head(torch.tanh(self.stem(x)) * self.scale)


def _data(seed, n=48, d=6, k=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, k, (n,), generator=g)


def _fit_two_tasks(hnet, **kw):
    cond = hnet.task_conditioned  # a plain network: one shared head (cl2) for the 3-class tasks
    learner = hypercl.ContinualLearner(hnet, strategy="hnet" if cond else "none", scenario="cl1" if cond else "cl2",
                                       batch_size=8, **kw)
    tasks = [_data(1), _data(2)]
    for t, d in enumerate(tasks):
        learner.fit_task(t, d, iterations=3)
    return learner, tasks


@pytest.mark.parametrize("source", ["hnet", "direct"])
def test_frozen_parameters_travel_in_the_checkpoint(tmp_path, source):
    torch.manual_seed(0)
    net = FrozenStem()
    hnet = (hypercl.HyperNetwork(net, generator="chunked_mlp", chunk_size=8, task_emb_dim=4, chunk_emb_dim=4,
                                 hidden_size=(8,)) if source == "hnet" else hypercl.DirectWeights(net))
    learner, tasks = _fit_two_tasks(hnet)
    path = tmp_path / "frozen.pt"
    learner.save(path)
    before = learner.evaluate(tasks, ["cl1"], record=False)["cl1"]["accuracy"]
    x = tasks[0][0]
    with torch.no_grad():
        want = learner.target(learner.hnet(0), x)
    torch.manual_seed(123)  # a fresh module: other frozen values
    back = hypercl.ContinualLearner.load(path, model=FrozenStem())
    with torch.no_grad():
        got = back.target(back.hnet(0), x)
    assert torch.equal(got, want)  # the frozen stem and scale came back, not the fresh module's
    assert back.evaluate(tasks, ["cl1"], record=False)["cl1"]["accuracy"] == before
    assert torch.equal(back.target.module.scale, net.scale)


def test_include_left_out_parameters_are_saved_too(tmp_path):
    """Trainable in the module but not generated (``include=``): as much part of the outputs as a frozen layer."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    target = hypercl.wrap(net, include=lambda name, p: name.startswith("2."))
    learner, _ = _fit_two_tasks(hypercl.HyperNetwork(target, generator="mlp", task_emb_dim=4, hidden_size=(6,)))
    learner.save(tmp_path / "c.pt")
    fresh = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    hypercl.ContinualLearner.load(tmp_path / "c.pt", hnet=hypercl.HyperNetwork(
        hypercl.wrap(fresh, include=lambda name, p: name.startswith("2.")), generator="mlp", task_emb_dim=4,
        hidden_size=(6,)))
    assert torch.equal(fresh[0].weight, net[0].weight) and torch.equal(fresh[0].bias, net[0].bias)


def test_a_module_whose_frozen_parameters_do_not_fit_is_refused_in_one_line(tmp_path):
    torch.manual_seed(0)
    learner, _ = _fit_two_tasks(hypercl.DirectWeights(FrozenStem()))
    learner.save(tmp_path / "c.pt")

    class Wider(FrozenStem):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(7), requires_grad=False)  # another shape

    with pytest.raises(CheckpointError, match=r"c\.pt.*'scale' has shape \(5,\)") as e:
        hypercl.ContinualLearner.load(tmp_path / "c.pt", model=Wider())
    assert "\n" not in str(e.value)

    class Extra(FrozenStem):
        def __init__(self):
            super().__init__()
            self.extra = nn.Parameter(torch.ones(2), requires_grad=False)  # a frozen parameter the file lacks

    with pytest.raises(CheckpointError, match="do not fit") as e:
        hypercl.ContinualLearner.load(tmp_path / "c.pt", model=Extra())
    assert "\n" not in str(e.value)


def test_frozen_parameters_are_in_the_digest(tmp_path):
    torch.manual_seed(0)
    learner, _ = _fit_two_tasks(hypercl.DirectWeights(FrozenStem()))
    learner.save(tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["target_frozen"]["scale"][0] += 1.0  # edited frozen value, digest kept
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="corrupt"):
        hypercl.ContinualLearner.load(tmp_path / "c.pt", model=FrozenStem())


# --------------------------------------------------------------------------------------------------------- 4. dtypes
@pytest.mark.parametrize("generator", ["chunked_mlp", "gru"])
def test_float64_target_gets_a_float64_hypernetwork_and_keeps_it_through_save_load(tmp_path, generator):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    hnet = hypercl.HyperNetwork(net, generator=generator, chunk_size=16, task_emb_dim=4, chunk_emb_dim=4,
                                hidden_size=8 if generator == "gru" else (8,))
    assert {p.dtype for p in hnet.parameters()} == {torch.float64}
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=8)
    tasks = [_data(1, dtype=torch.float64), _data(2, dtype=torch.float64)]
    for t, d in enumerate(tasks):
        learner.fit_task(t, d, iterations=3)
    acc = learner.evaluate(tasks, ["cl1"], record=False)["cl1"]["accuracy"]
    learner.save(tmp_path / "d.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "d.pt",
                                         model=nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)))
    assert {p.dtype for p in back.hnet.parameters()} == {torch.float64}
    assert back.target.dtype == torch.float64
    for (n, a), b in zip(learner.hnet.state_dict().items(), back.hnet.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), n
    assert back.evaluate(tasks, ["cl1"], record=False)["cl1"]["accuracy"] == acc


def test_registered_float64_model_comes_back_float64(tmp_path):
    torch.manual_seed(0)
    net = hypercl.models.mlp(6, [5], 3, "relu").double()
    learner, _ = _fit_two_tasks(hypercl.HyperNetwork(net, generator="lstm", chunk_size=16, hidden_size=8,
                                                         task_emb_dim=4, chunk_emb_dim=4))
    learner.save(tmp_path / "r.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "r.pt")  # rebuilt from its registered spec
    assert back.target.dtype == torch.float64
    assert all(torch.equal(a, b) for a, b in zip(learner.hnet.parameters(), back.hnet.parameters()))


def test_other_float_data_is_cast_to_the_target_dtype_with_one_warning():
    def run(dtype):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
        learner = hypercl.ContinualLearner(hypercl.HyperNetwork(net, generator="mlp", task_emb_dim=4,
                                                                hidden_size=(6,)), strategy="hnet", batch_size=8)
        tasks = [(x.to(dtype), y) for x, y in (_data(1), _data(2))]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for t, d in enumerate(tasks):
                learner.fit_task(t, d, iterations=4)
            acc = learner.evaluate(tasks, ["cl1"], record=False)["cl1"]["accuracy"]
        casts = [w for w in caught if issubclass(w.category, hypercl.batches.DtypeCastWarning)]
        return learner, acc, casts

    ref, ref_acc, none = run(torch.float32)
    assert none == []
    for dtype in (torch.float64, torch.float16):
        got, acc, casts = run(dtype)
        assert len(casts) == 1 and str(dtype) in str(casts[0].message)
        # the cast data are float32 values: the same steps (float16 data are rounded first, so equal only for f64)
        if dtype == torch.float64:
            assert acc == ref_acc
            assert all(torch.equal(a, b) for a, b in zip(ref.hnet.parameters(), got.hnet.parameters()))


# ------------------------------------------------------------------------------------------ 7. the user's module mode
@pytest.mark.parametrize("user_mode", [False, True])
def test_fit_and_evaluate_restore_the_mode_the_user_set(user_mode):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    net.train(user_mode)
    hnet = hypercl.HyperNetwork(net, generator="mlp", task_emb_dim=4, hidden_size=(6,))
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=8)
    learner.fit_task(0, _data(1), iterations=2)
    assert net.training is user_mode and all(m.training is user_mode for m in net.modules())
    learner.evaluate([_data(1)])
    assert net.training is user_mode
    learner.fit_task(1, _data(2), iterations=2)
    learner.task_fisher(1, _data(2), num_samples=8)
    assert net.training is user_mode


def test_fit_evaluate_and_fisher_restore_each_submodules_own_mode():
    """A frozen backbone kept in eval mode inside a training model (and a hypernetwork in another mode than the
    target) comes back exactly as the user set it, submodule by submodule."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5))
    net = nn.Sequential(backbone, nn.Dropout(0.3), nn.Linear(8, 3))
    net.train()
    backbone.eval()
    hnet = hypercl.HyperNetwork(net, generator="mlp", task_emb_dim=4, hidden_size=(6,))
    hnet.generator.eval()
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=8)
    before = {name: m.training for name, m in list(net.named_modules()) + list(hnet.named_modules(prefix="h"))}

    def modes() -> dict:
        return {name: m.training for name, m in list(net.named_modules()) + list(hnet.named_modules(prefix="h"))}

    learner.fit_task(0, _data(1), iterations=2)
    assert modes() == before
    learner.evaluate([_data(1)])
    assert modes() == before
    learner.task_fisher(0, _data(1), num_samples=8)
    assert modes() == before
    assert not backbone.training and not backbone[1].training and net[1].training


# ----------------------------------------------------------------------------------- 5. non-finite numeric arguments
@pytest.mark.parametrize("lr", [float("nan"), float("-inf"), float("inf"), 0.0, 1e300])
def test_learner_refuses_a_non_finite_lr(lr):
    net = nn.Linear(6, 3)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        hypercl.ContinualLearner(hypercl.DirectWeights(net), lr=lr)


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -1.0, 1e300])
def test_regularisers_refuse_a_non_finite_or_huge_beta(beta):
    from hypercl.strategies import get_strategy

    for name in ("hnet", "iwr"):
        with pytest.raises(ValueError, match="beta must be a finite number"):
            get_strategy(name, beta=beta)


# ------------------------------------------------------------------------------------------------------ 11. messages
def test_no_tasks_yet_is_said_plainly():
    hnet = hypercl.HyperNetwork(nn.Linear(6, 3), generator="mlp", task_emb_dim=4, hidden_size=(6,))
    with pytest.raises(KeyError) as e:
        hnet.generate([0])
    assert "0..-1" not in str(e.value) and "no tasks yet" in str(e.value)


# ---------------------------------------------------------------------- the command line: one finished quick run
RUN = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl1", "--quick", *TINY]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished quick run (checkpoint + results JSON + PNG), copied by each test that changes it."""
    if not DATA or not (Path(DATA) / "MNIST" / "raw").is_dir():
        pytest.skip("HYPERCL_DATA with MNIST/raw is not set")
    out = tmp_path_factory.mktemp("finished")
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _results_file(folder):
    (path,) = sorted(Path(folder).glob("split_mnist_hnet_quick_*.json"))
    return path


def _one_line(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------- 2. an unreadable results file, found before training
@pytest.mark.parametrize("damage", ["a list", "not utf-8", "digest mismatch", "seed is text"])
def test_damaged_results_file_is_refused_before_any_data(finished, tmp_path, capsys, damage):
    out = _copy(finished, tmp_path / "out")
    path = _results_file(out)
    data = json.loads(path.read_text())
    if damage == "a list":
        path.write_text(json.dumps([data]))
    elif damage == "not utf-8":
        raw = bytearray(path.read_bytes())
        raw[raw.find(b'"method"') + 2] = 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "digest mismatch":
        data["wall_time_s"] += 1.0  # an edited number, digest kept
        path.write_text(json.dumps(data))
    else:
        from hypercl.experiments.results_file import results_text

        data["runs"][0]["seed"] = "zero"
        path.write_text(results_text(data))  # well-formed digest, wrong type
    capsys.readouterr()
    # a new seed merging into the same file: refused before any data (the data root does not exist)
    code = main([*RUN, "--out", str(out), "--seed-offset", "1", "--data-root", str(tmp_path / "none")])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and path.name in line and "move it away" in line and "data problem" not in line
    assert not list((out / "checkpoints").glob("*_seed1.pt"))
    code = main([*RUN, "--out", str(out), "--resume", "--data-root", str(tmp_path / "none")])
    assert code == 2 and path.name in _one_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------------------------- 3. a full disk
def _full_disk_for(monkeypatch, suffix):
    import hypercl.checkpoint as ck

    real = ck._write_bytes

    def write(path, f, data):
        if path.suffix == suffix:
            f.write(data[: len(data) // 3])  # part of it fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, f, data)

    monkeypatch.setattr(ck, "_write_bytes", write)


def test_full_disk_on_a_checkpoint_is_one_line_and_resume_continues(finished, tmp_path, capsys, monkeypatch):
    out = _copy(finished, tmp_path / "out")
    _full_disk_for(monkeypatch, ".pt")
    capsys.readouterr()
    args = [*RUN, "--out", str(out), "--seed-offset", "1"]
    assert main(args) == 4
    line = _one_line(capsys.readouterr().err)
    assert "no space left" in line and "_seed1.pt" in line and "MB" in line and "--resume" in line
    assert not list((out / "checkpoints").glob(".*.tmp"))  # the partial file is gone
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    data = json.loads(_results_file(out).read_text())
    assert data["seeds"] == [0, 1]


def test_full_disk_on_the_results_json_is_one_line(finished, tmp_path, capsys, monkeypatch):
    out = _copy(finished, tmp_path / "out")
    before = _results_file(out).read_bytes()
    _full_disk_for(monkeypatch, ".json")
    capsys.readouterr()
    assert main([*RUN, "--out", str(out), "--seed-offset", "1"]) == 4
    line = _one_line(capsys.readouterr().err)
    assert _results_file(out).name in line and "--resume" in line
    assert _results_file(out).read_bytes() == before  # the old file is intact


def test_a_heatmap_that_cannot_be_written_is_a_warning(finished, tmp_path, capsys, monkeypatch):
    out = _copy(finished, tmp_path / "out")
    _full_disk_for(monkeypatch, ".png")
    capsys.readouterr()
    assert main([*RUN, "--out", str(out), "--seed-offset", "1"]) == 0
    cap = capsys.readouterr()
    assert "warning: heatmap not written" in _one_line(cap.err)
    assert "HNET (reduced)" in cap.out  # the table is still printed
    assert json.loads(_results_file(out).read_text())["seeds"] == [0, 1]


def test_disk_full_error_names_the_size_needed(tmp_path, monkeypatch):
    import hypercl.checkpoint as ck

    monkeypatch.setattr(ck, "_free_bytes", lambda folder: 1000)
    with pytest.raises(ck.DiskFullError, match=r"x\.json .*needs 5,000 bytes, 1,000 bytes free") as e:
        ck.atomic_write_text("a" * 5000, tmp_path / "x.json")
    assert e.value.errno == errno.ENOSPC and not (tmp_path / "x.json").exists()


# -------------------------------------------------------------------------------- 9. one trainer per (identity, seed)
def test_a_run_being_trained_elsewhere_is_refused(finished, tmp_path, capsys):
    from hypercl.experiments.locks import hold_run_lock

    out = _copy(finished, tmp_path / "out")
    (ck,) = (out / "checkpoints").glob("*_seed0.pt")
    fd = hold_run_lock(ck.with_name(ck.name.replace("_seed0.pt", "_seed1.pt")))  # "another process" trains seed 1
    try:
        capsys.readouterr()
        assert main([*RUN, "--out", str(out), "--seed-offset", "1", "--data-root", str(tmp_path / "none")]) == 2
        line = _one_line(capsys.readouterr().err)
        assert "another hypercl process is training this run" in line and "_seed1.pt" in line
        assert not list((out / "checkpoints").glob("*_seed1.pt"))
    finally:
        os.close(fd)
    # a process that ended holds nothing: the lock file left behind does not block
    assert main([*RUN, "--out", str(out), "--seed-offset", "1"]) == 0


# ---------------------------------------------------------------------------------- 11. messages about checkpoints
def test_a_damaged_checkpoint_is_not_called_this_run(finished, tmp_path, capsys):
    out = _copy(finished, tmp_path / "out")
    (ck,) = (out / "checkpoints").glob("*_seed0.pt")
    ck.write_bytes(ck.read_bytes()[: 5000])  # cut short
    capsys.readouterr()
    assert main([*RUN, "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "already holds this run" not in line and "not a readable" in line and "remove it" in line


def test_bench_out_message_names_what_bench_writes(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["bench", "--quick", "--out", str(f / "b.json")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "checkpoints" not in line and "bench.json" in line


# ---------------------------------------------------------------------------- 5. numbers, 8. empty --out (one line)
@pytest.mark.parametrize("argv", [
    [*RUN, "--beta", "nan"], [*RUN, "--lr", "-inf"], [*RUN, "--lr", "1e300"], [*RUN, "--beta", "1e300"],
    ["ablation", "--kind", "beta", "--values", "0.1,inf"], ["ablation", "--kind", "beta", "--values", "0.1,1e300"],
    ["ablation", "--kind", "compression", "--values", "0.5,1e9"],
    [*RUN, "--out", " "], ["table", "x.json", "--out", ""], ["bench", "--out", ""], ["ablation", "--kind", "beta",
                                                                                   "--out", ""],
])
def test_bad_numbers_and_empty_out_are_one_line_before_anything(tmp_path, argv, capsys, monkeypatch):
    monkeypatch.setenv("HYPERCL_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's refusal
        code = e.code
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert any(k in line for k in ("finite", "is empty", "--lr", "--beta", "at most")), line
    assert not (tmp_path / "no-data-here").exists() and not list(tmp_path.rglob("checkpoints"))


def test_config_refuses_non_finite_and_huge_values():
    from hypercl.config import ConfigError, RunConfig
    from hypercl.experiments import method_config

    for key, value in (("lr", float("inf")), ("lr", 1e308), ("beta", float("nan")), ("beta", float("inf"))):
        cfg = method_config("split_mnist", "hnet", quick=True, **{key: value})
        with pytest.raises(ConfigError, match=f"--{key} must be a finite number"):
            RunConfig.from_json({"protocol": 2, **cfg}).validate()


# --------------------------------------------------------------------------------------------------- 6. interrupts
@needs_mnist
def test_sigterm_stops_a_run_in_one_line_with_143_and_resume_finishes_it(tmp_path):
    out = tmp_path / "out"
    argv = [*RUN, "--out", str(out)]
    # a real process and a real signal; the run pauses after its second task (the first one's checkpoint is
    # written), so the signal arrives while it trains, whatever the machine's speed
    code = ("import sys, time\nimport hypercl.experiments.runner as r\n"
            "r.after_fit_task = lambda learner, t, task: time.sleep(60) if t == 1 else None\n"
            f"from hypercl.cli import main\nsys.exit(main({argv!r}))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.glob("checkpoints/*.pt")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    line = _one_line(err)
    assert "stopped by SIGTERM during hnet seed 0" in line and str(out / "checkpoints") in line
    command = line.split("continue with: ")[1]
    assert command.endswith("--resume")
    (ck,) = out.glob("checkpoints/*.pt")
    assert torch.load(ck, weights_only=True)["learned_tasks"] == [0]  # task 1 was not checkpointed yet
    import shlex

    assert main(shlex.split(command)[1:]) == 0  # the printed command continues the run
    assert torch.load(ck, weights_only=True)["learned_tasks"] == [0, 1, 2, 3, 4]
    assert json.loads(_results_file(out).read_text())["seeds"] == [0]


def test_ctrl_c_is_one_line_with_130(finished, tmp_path, capsys, monkeypatch):
    from hypercl.experiments import runner

    def interrupt(learner, task_id, task):
        if task_id == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the third task is being finished
            time.sleep(1)

    monkeypatch.setattr(runner, "after_fit_task", interrupt)
    # Ctrl-C raises KeyboardInterrupt only where SIGINT has Python's default handler: a process started in the
    # background of a non-interactive shell inherits SIGINT ignored (and Python then keeps it ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        out = _copy(finished, tmp_path / "out")
        capsys.readouterr()
        code = main([*RUN, "--out", str(out), "--seeds", "2", "--resume"])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130  # seed 0 is finished, seed 1 stops
    line = _one_line(capsys.readouterr().err)
    assert "SIGINT" in line and "during hnet seed 1" in line and "finished: hnet seed 0" in line
    assert line.endswith("--seeds 2 --resume")
    (ck,) = (out / "checkpoints").glob("*_seed1.pt")
    assert torch.load(ck, weights_only=True)["learned_tasks"] == [0, 1]
    assert not list((out / "checkpoints").glob(".*.tmp"))


# ------------------------------------------------------------------------------------------------ 10. hypercl table
def _table(paths, capsys):
    capsys.readouterr()
    code = main(["table", *map(str, paths), "--no-paper"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _edited(good, tmp_path, name, edit):
    """A copy of a results file with ``edit`` applied and its digest recomputed (well-formed, but wrong inside)."""
    from hypercl.experiments.results_file import results_text

    data = json.loads(good.read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(results_text(data))
    return path


def test_table_shows_the_good_files_and_names_each_bad_one(finished, tmp_path, capsys):
    folder = _copy(finished, tmp_path / "res")
    good = _results_file(folder)
    (folder / "zz_truncated.json").write_bytes(good.read_bytes()[:300])
    (folder / "zz_null.json").write_text("null")
    (folder / "zz_latin1.json").write_bytes('{"method": "h\xe9"}'.encode("latin-1"))
    _edited(good, folder, "zz_null_summary_cell.json", lambda d: d["runs"][0]["scenarios"]["cl1"].update(
        final_average=None, matrix=None))
    code, out, err = _table([folder], capsys)
    assert code == 1 and "HNET (reduced)" in out
    lines = err.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in err
    for name in ("zz_truncated.json", "zz_null.json", "zz_latin1.json", "zz_null_summary_cell.json"):
        assert sum(name in ln for ln in lines) == 1, err
    code, out, err = _table([folder / "zz_null.json"], capsys)
    assert code == 2 and out == "" and "zz_null.json" in _one_line(err)


def test_table_refuses_a_file_without_runs_and_an_unknown_protocol(finished, tmp_path, capsys):
    good = _results_file(finished)
    empty = _edited(good, tmp_path, "empty.json", lambda d: d.update(runs=[], seeds=[]))
    code, _, err = _table([empty], capsys)
    assert code == 2 and "holds no runs" in _one_line(err)
    future = _edited(good, tmp_path, "future.json", lambda d: d.update(protocol=99))
    code, _, err = _table([future], capsys)
    assert code == 2 and "protocol 99 is newer" in _one_line(err) and "future.json" in err


def test_table_shows_what_the_runs_hold_not_a_stale_summary(finished, tmp_path, capsys):
    good = _results_file(finished)
    stale = _edited(good, tmp_path, "stale.json", lambda d: d["summary"]["cl1"]["stats"]["final"].update(mean=0.1234))
    code, out, _ = _table([stale], capsys)
    final = json.loads(good.read_text())["runs"][0]["scenarios"]["cl1"]["final_average"]
    assert code == 0 and "12.34" not in out and f"{100 * final:.2f} (n=1)" in out


def test_table_refuses_an_edited_number(finished, tmp_path, capsys):
    good = _results_file(finished)
    text = good.read_text()
    data = json.loads(text)
    old = json.dumps(data["runs"][0]["scenarios"]["cl1"]["final_average"])
    bumped = tmp_path / "bumped.json"
    bumped.write_text(text.replace(f'"final_average": {old}', '"final_average": 0.999', 1))
    assert bumped.read_text() != text
    code, _, err = _table([bumped], capsys)
    assert code == 2 and "corrupt or was edited" in _one_line(err) and "bumped.json" in err


def test_an_interrupted_bench_is_one_line(tmp_path, capsys, monkeypatch):
    import hypercl.bench as bench

    def interrupted(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    monkeypatch.setattr(bench, "main", interrupted)
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 143
    line = _one_line(capsys.readouterr().err)
    assert "SIGTERM" in line and "nothing written" in line and "hypercl bench" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("damage", ["cut short", "not a checkpoint"])
def test_a_damaged_replay_checkpoint_is_not_called_this_run(tmp_path, capsys, damage):
    from hypercl.cli.run_checks import replay_dir
    from hypercl.experiments.identity import run_config
    from hypercl.replay import replay_run_config

    out = tmp_path / "out"
    cfg = run_config(replay_run_config, "split_mnist", "hnet+r", quick=True, iterations=3)
    folder = replay_dir(cfg, out / "checkpoints")
    folder.mkdir(parents=True)
    ck = folder / "split_mnist_hnet+r_replay_seed0.pt"
    if damage == "cut short":
        torch.save({"format": "hypercl", "weights": torch.zeros(1000)}, ck)
        ck.write_bytes(ck.read_bytes()[:300])
    else:
        ck.write_text("not a checkpoint")
    argv = ["run", "--benchmark", "split_mnist", "--method", "hnet+r", "--scenario", "cl1", "--quick",
            "--iterations", "3", "--no-progress", "--out", str(out)]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "already holds this run" not in line and str(ck.name) in line and "remove it" in line


def test_an_empty_table_out_asks_for_a_file(capsys):
    with pytest.raises(SystemExit) as e:
        main(["table", "x.json", "--out", ""])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "is empty; give a file path" in err and "folder" not in err.splitlines()[-1]


def test_a_replay_run_being_trained_elsewhere_is_refused(tmp_path, capsys):
    from hypercl.cli.run_checks import replay_dir
    from hypercl.experiments.identity import run_config
    from hypercl.experiments.locks import hold_run_lock
    from hypercl.replay import replay_run_config

    out = tmp_path / "out"
    cfg = run_config(replay_run_config, "split_mnist", "hnet+r", quick=True, iterations=3)
    folder = replay_dir(cfg, out / "checkpoints")
    folder.mkdir(parents=True)
    fd = hold_run_lock(folder / "seed0")  # "another process" trains seed 0 of this replay run
    try:
        argv = ["run", "--benchmark", "split_mnist", "--method", "hnet+r", "--scenario", "cl1", "--quick",
                "--iterations", "3", "--no-progress", "--out", str(out), "--data-root", str(tmp_path / "none")]
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert "another hypercl process is training this run" in line
        assert not (tmp_path / "none").exists()
    finally:
        os.close(fd)
