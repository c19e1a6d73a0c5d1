"""The optional speed flags of the learner: bf16 autocast of the target forward and torch.compile of it (CPU)."""

import warnings

import pytest
import torch

import hypercl
from hypercl.checkpoint import atomic_save, load_checkpoint
from helpers import conflicting_tasks, tiny_hnet, tiny_mlp

TASKS = conflicting_tasks()
TESTS = [te for _, te in TASKS]

dynamo_ok = hasattr(torch, "compile") and torch._dynamo.is_dynamo_supported()
needs_compile = pytest.mark.skipif(not dynamo_ok, reason="torch.compile is not available here")


def learner_for(strategy="hnet", **flags):
    torch.manual_seed(0)
    return hypercl.ContinualLearner(tiny_hnet(), strategy=strategy, strategy_kwargs={"beta": 0.05}, batch_size=64,
                                    lr=1e-2, seed=0, **flags)


def run(tasks=2, iterations=30, **flags):
    learner = learner_for(**flags)
    for t in range(tasks):
        learner.fit_task(t, TASKS[t][0], iterations=iterations)
        learner.evaluate(TESTS)
    return learner


def weights(learner):
    with torch.no_grad():
        return learner.hnet.generate_flat(learner.learned_tasks)


def test_bf16_autocast_trains_and_the_regularizer_still_protects():
    learner = learner_for(autocast_dtype=torch.bfloat16)
    seen = []  # dtype of the target's first layer output during training
    hook = learner.target.module[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    losses = []
    learner.fit_task(0, TASKS[0][0], iterations=150, callback=lambda it, loss: losses.append(float(loss)))
    hook.remove()
    assert set(seen) == {torch.bfloat16}  # the target ran under autocast ...
    x, y = TASKS[0][0]
    assert learner.task_logits(0, x[:8]).dtype == torch.float32  # ... and its output comes back in float32
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10  # it learns
    learner.evaluate(TESTS)
    for t in (1, 2):
        learner.fit_task(t, TASKS[t][0], iterations=150)
        learner.evaluate(TESTS)
    r = learner.results()
    assert r["backward_transfer"] > -0.05 and min(r["matrix"][-1]) > 0.9  # conflicting tasks all kept


def test_autocast_dtype_names_and_errors():
    assert learner_for(autocast_dtype="bf16").autocast_dtype is torch.bfloat16
    assert learner_for(autocast_dtype="float16").autocast_dtype is torch.float16
    with pytest.raises(ValueError, match="autocast"):
        learner_for(autocast_dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown autocast dtype"):
        learner_for(autocast_dtype="int8")


def test_flags_are_saved_and_restored_and_old_checkpoints_load(tmp_path):
    learner = learner_for(compile=True, compile_options={"backend": "eager", "fullgraph": False},
                          autocast_dtype=torch.bfloat16)
    learner.fit_task(0, TASKS[0][0], iterations=2)
    learner.save(tmp_path / "flags.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "flags.pt", model=tiny_mlp())
    assert back.compile is True and back.compile_options == {"backend": "eager", "fullgraph": False}
    assert back.autocast_dtype is torch.bfloat16
    back.fit_task(1, TASKS[1][0], iterations=2)  # and it goes on with them
    assert back.compile_error is None
    state = load_checkpoint(tmp_path / "flags.pt")
    for key in ("compile", "compile_options", "autocast_dtype"):  # a checkpoint written before the flags existed
        del state["learner"][key]
    atomic_save(state, tmp_path / "old.pt")
    old = hypercl.ContinualLearner.load(tmp_path / "old.pt", model=tiny_mlp())
    assert old.compile is False and old.compile_options == {} and old.autocast_dtype is None


@needs_compile
def test_compiled_target_matches_eager():
    compiled_graphs = []

    def counting_backend(gm, example_inputs):  # a real dynamo backend that needs no C++ compiler
        compiled_graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    ref = run()
    got = run(compile=True, compile_options={"backend": counting_backend})
    assert compiled_graphs, "the target forward was not compiled"
    assert got.compile_error is None
    assert torch.allclose(weights(got), weights(ref), atol=1e-6, rtol=0)
    assert got.results()["matrix"] == ref.results()["matrix"]
    aot = run(compile=True, compile_options={"backend": "aot_eager"})  # compiled forward AND backward graphs
    assert aot.compile_error is None
    assert torch.allclose(weights(aot), weights(ref), atol=1e-5, rtol=0)


@needs_compile
def test_compile_with_bf16_trains():
    learner = run(iterations=60, compile=True, compile_options={"backend": "aot_eager"},
                  autocast_dtype=torch.bfloat16)
    assert learner.compile_error is None
    assert min(learner.results()["matrix"][-1]) > 0.8


@needs_compile
def test_failed_compilation_falls_back_to_eager_with_a_warning():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no C++ compiler in this test")

    torch._dynamo.reset()
    ref = run(tasks=1)
    with pytest.warns(RuntimeWarning, match="torch.compile of the target network failed"):
        got = run(tasks=1, compile=True, compile_options={"backend": broken_backend})
    assert "no C++ compiler" in got.compile_error
    assert torch.equal(weights(got), weights(ref))  # eager from the first step on
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, not every step
        got.fit_task(1, TASKS[1][0], iterations=3)
    with pytest.warns(RuntimeWarning, match="failed"):
        bad = run(tasks=1, compile=True, compile_options={"backend": "no_such_backend"})
    assert bad.compile_error is not None and bad.learned_tasks == [0]
