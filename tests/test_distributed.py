"""Data-parallel training (``torchrun``, 2 gloo processes on the CPU) equals the 1-process run with the same global
batch: the same generated weights, parameters, losses and accuracies. Plus the shard slicing and the clear errors.

The workers run THIS file as a script under ``torchrun`` (see ``_worker``).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import conflicting_tasks, mnist_root, mnist_skip_reason, tiny_hnet, tiny_mlp

import hypercl
from hypercl.distributed import (
    DistributedContext,
    check_batch_size,
    init_distributed,
    is_main_process,
    shard_bounds,
    shutdown,
)

#: name -> (strategy, strategy kwargs, tasks registered up front (a trainable but unused embedding), learner flags)
CONFIGS = {
    "hnet_lookahead": ("hnet", {"beta": 0.05, "lookahead": True}, 3, {}),
    "iwr": ("iwr", {"beta": 0.05, "fisher_samples": 100}, 0, {}),
    "grow": ("grow", {}, 0, {}),
}
if hasattr(torch, "compile") and torch._dynamo.is_dynamo_supported():  # the lookahead backpropagates twice
    CONFIGS["hnet_lookahead_compiled"] = ("hnet", {"beta": 0.05, "lookahead": True}, 0,
                                          {"compile": True, "compile_options": {"backend": "aot_eager"}})
#: 397 = 6 * 64 + 13: the last batch of every epoch is split 7 / 6 (the weighted uneven-shard path)
N_TRAIN = 397
BATCH = 64
ITERATIONS = 20


def train(config, distributed=None):
    """Two tasks of the tiny hypernetwork; returns what must be equal between 1 and 2 processes."""
    strategy, kw, num_tasks, flags = CONFIGS[config]
    tasks = conflicting_tasks(n=N_TRAIN)
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(num_tasks=num_tasks), strategy=strategy, strategy_kwargs=kw,
                                       batch_size=BATCH, lr=1e-2, seed=0, distributed=distributed, **flags)
    for t in range(2):
        learner.fit_task(t, tasks[t][0], iterations=ITERATIONS)
        learner.evaluate([te for _, te in tasks])
    assert learner.compile_error is None
    with torch.no_grad():
        return {
            "weights": learner.hnet.generate_flat([0, 1]).clone(),
            "params": {n: p.detach().clone() for n, p in learner.hnet.named_parameters()},
            "matrix": learner.results()["matrix"],
            "losses": [learner.train_log[t]["final_loss"] for t in range(2)],
        }


def _ranks_agree_with_batchnorm(ctx):
    """A BatchNorm target trains on per-shard batch statistics (not equal to one process), but every rank must end
    with the same parameters AND the same running statistics (averaged over the ranks after the task)."""
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(tiny_mlp(bn=True)), strategy="hnet", batch_size=BATCH, lr=1e-2,
                                       seed=0, distributed=ctx)
    learner.fit_task(0, conflicting_tasks(n=N_TRAIN)[0][0], iterations=5)
    state = torch.cat([p.detach().reshape(-1) for p in learner.hnet.parameters()]
                      + [b.reshape(-1).float() for b in learner.task_buffers[0].values()])
    gathered = [torch.empty_like(state) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(gathered, state)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _worker(out_path):
    torch.set_num_threads(1)
    ctx = init_distributed()
    assert ctx is not None and ctx.world_size == 2 and ctx.backend == "gloo"
    assert is_main_process() == (ctx.rank == 0)
    results = {name: train(name, ctx) for name in CONFIGS}
    results["batchnorm_ranks_agree"] = _ranks_agree_with_batchnorm(ctx)
    if ctx.is_main:  # only rank 0 writes
        torch.save(results, out_path)
    shutdown()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "rank0.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(Path(__file__).resolve()), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert out.exists(), "rank 0 wrote no results"
    return torch.load(out)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_two_processes_equal_one_process(two_process_results, config):
    got = two_process_results[config]
    ref = train(config)
    assert torch.allclose(got["weights"], ref["weights"], atol=1e-5, rtol=0)
    assert ref["params"].keys() == got["params"].keys()
    for name, p in ref["params"].items():
        assert torch.allclose(got["params"][name], p, atol=1e-5, rtol=0), name
    if config == "hnet_lookahead":  # the registered third task's embedding got no gradient anywhere
        assert torch.equal(got["params"]["task_embeddings.2"], ref["params"]["task_embeddings.2"])
    # accuracies: identical up to (at most) one test sample sitting on a decision boundary
    flat = lambda m: [a for row in m for a in row if a is not None]  # noqa: E731
    assert flat(got["matrix"]) == pytest.approx(flat(ref["matrix"]), abs=1.01 / N_TRAIN)
    assert got["losses"] == pytest.approx(ref["losses"], rel=1e-4)  # the logged loss is the global one


def test_batchnorm_ranks_stay_identical(two_process_results):
    assert two_process_results["batchnorm_ranks_agree"] is True


def test_shard_slicing():
    assert [shard_bounds(128, r, 4) for r in range(4)] == [(0, 32), (32, 64), (64, 96), (96, 128)]
    # the last, smaller batch of an epoch: contiguous, covering, sizes differ by at most one
    assert [shard_bounds(13, r, 2) for r in range(2)] == [(0, 7), (7, 13)]
    for n in range(0, 12):
        bounds = [shard_bounds(n, r, 3) for r in range(3)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(hi - lo for lo, hi in bounds) - min(hi - lo for lo, hi in bounds) <= 1
    ctx = DistributedContext(rank=1, world_size=2, device=torch.device("cpu"), backend="gloo", local_rank=1)
    assert ctx.shard(64) == (32, 64) and not ctx.is_main
    x = torch.arange(64)
    lo, hi = ctx.shard(len(x))
    assert torch.equal(x[lo:hi], torch.arange(32, 64))
    with pytest.raises(ValueError, match="rank 2"):
        shard_bounds(10, 2, 2)


def test_batch_size_must_divide_by_world_size():
    ctx = DistributedContext(rank=0, world_size=4, device=torch.device("cpu"), backend="gloo")
    check_batch_size(128, 4)
    with pytest.raises(ValueError, match=r"batch size 130 is not divisible by the world size 4.*128 or 132"):
        check_batch_size(130, 4)
    with pytest.raises(ValueError, match="not divisible by the world size 4"):
        hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", batch_size=130, distributed=ctx)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", batch_size=128, distributed=ctx)
    train_pair = conflicting_tasks(n=50)[0][0]
    with pytest.raises(ValueError, match="batch size 62 is not divisible"):
        learner.fit_task(0, train_pair, iterations=1, batch_size=62)  # checked before any collective
    assert learner.learned_tasks == [] and learner.hnet.num_tasks == 0


def test_init_distributed_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed() is None
    assert is_main_process()
    shutdown()  # no process group: a no-op
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed()


@pytest.mark.skipif(mnist_root() is None, reason=mnist_skip_reason())
def test_cli_under_torchrun_equals_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m hypercl run ...``: rank 0 alone writes the JSON, whose accuracies equal the
    1-process run's (within one test image: floating-point summation order differs)."""
    import json

    args = ["run", "--benchmark", "split_mnist", "--method", "hnet,si", "--scenario", "cl1,cl3", "--quick",
            "--iterations", "6", "--max-train-per-task", "100", "--max-test-per-task", "40", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "hypercl", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "hypercl", *args,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("final average test accuracy") == 1  # only rank 0 prints the table
    for method in ("hnet", "si"):
        a = json.loads(next((tmp_path / "one").glob(f"split_mnist_{method}_quick_" + "?" * 16 + ".json")).read_text())
        b = json.loads(next((tmp_path / "two").glob(f"split_mnist_{method}_quick_" + "?" * 16 + ".json")).read_text())
        assert a["world_size"] == 1 and b["world_size"] == 2
        for s in ("cl1", "cl3"):
            for x, y in zip(a["runs"][0]["scenarios"][s]["matrix"][-1], b["runs"][0]["scenarios"][s]["matrix"][-1]):
                assert x == pytest.approx(y, abs=0.026)


if __name__ == "__main__":  # one torchrun worker
    _worker(sys.argv[1])
