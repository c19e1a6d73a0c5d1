"""Damaged files, a few hundred of them from a seeded generator: truncations, bit flips, overwritten, removed and
inserted bytes, non-UTF-8 bytes, JSON values of the wrong type or null (with the digest kept, recomputed or removed),
checkpoint entries of the wrong type. ``hypercl table`` and ``ContinualLearner.load`` must answer each with one
clear error — :class:`ResultsFileError` / :class:`CheckpointError`, one line naming the file — or, where the damage
left the content intact, with exactly the original content. Never a traceback from inside, never a silent
success with other content."""

import copy
import json
import math
import os
import random

import pytest
import torch

import hypercl
from hypercl.checkpoint import CheckpointError, atomic_save, load_checkpoint
from hypercl.cli import main
from hypercl.experiments.report import write_results
from hypercl.experiments.results_file import (
    ResultsFileError,
    read_results,
    results_text,
)
from hypercl.experiments.runner import summarize

SEED = int(os.environ.get("HYPERCL_FUZZ_SEED", "20261203"))  # another seed, other damaged files
WRONG = [None, "x", "", [], {}, True, False, -1, 1.5, [None], {"a": None}, float("nan"), 1e400]


def _learner(scenario="cl1"):
    torch.manual_seed(0)
    model = hypercl.models.mlp(4, [6], 2, "relu")
    hnet = hypercl.HyperNetwork(model, generator="chunked_mlp", chunk_size=8, hidden_size=(6,), task_emb_dim=3,
                                chunk_emb_dim=3)
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=8)
    g = torch.Generator().manual_seed(1)
    tasks = [(torch.randn(24, 4, generator=g), torch.randint(0, 2, (24,), generator=g)) for _ in range(3)]
    for t, d in enumerate(tasks):
        learner.fit_task(t, d, iterations=2)
        learner.evaluate(tasks, scenarios=["cl1", "cl3"])
    return learner


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    folder = tmp_path_factory.mktemp("originals")
    learner = _learner()
    ck = folder / "learner.pt"
    learner.save(ck)
    runs = [{"seed": s, "scenarios": {sc: learner.results(sc) for sc in ("cl1", "cl3")}, "train_log": {},
             "params": {"target": 44, "model": 100, "compression_ratio": 2.27}, "wall_time_s": 1.0} for s in (0, 1)]
    result = {"benchmark": "split_mnist", "method": "hnet", "scenarios": ["cl1", "cl3"], "seeds": [0, 1],
              "fingerprint": "0123456789abcdef", "protocol": 2, "reduced": True, "config": {"quick": True},
              "summary": summarize(runs, ["cl1", "cl3"]), "runs": runs,
              "params": {"target": 44, "model": 100, "compression_ratio": 2.27}, "wall_time_s": 2.0,
              "command": "hypercl run ..."}
    res = folder / "split_mnist_hnet_quick_0123456789abcdef.json"
    write_results(result, res)
    return ck, res


def _kind(v):
    if v is None or isinstance(v, (bool, str, list, dict)):
        return type(v).__name__
    if isinstance(v, (int, float)):
        return "number" if math.isfinite(v) else "non-finite"
    return type(v).__name__


def _wrong_for(value, rng, extra=()):
    """A replacement of another kind than ``value`` (a number for a string, null for a list, NaN for a number...)."""
    return rng.choice([w for w in [*WRONG, *extra] if _kind(w) != _kind(value)])


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def _byte_mutants(raw: bytes, rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        b = bytearray(raw)
        kind = ["truncate", "flip", "overwrite", "delete", "insert", "non-utf8"][i % 6]
        at = rng.randrange(len(b))
        if kind == "truncate":
            b = b[:at]
        elif kind == "flip":
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif kind == "overwrite":
            b[at] = rng.choice([0x00, 0xFF, 0x80, 0x7B, 0x22])
        elif kind == "delete":
            del b[at:at + rng.randint(1, 64)]
        elif kind == "insert":
            b[at:at] = bytes([rng.randrange(256)])
        else:
            b[at:at] = rng.choice([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80"])
        out.append((f"{kind}@{at}", bytes(b)))
    return out


def _paths(obj, prefix=()):
    """Every (path) to a value inside a JSON-like tree."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _table(path, capsys):
    capsys.readouterr()
    code = main(["table", str(path), "--no-paper"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_clear_refusal(code, err, path):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and path.name in lines[0] and "Traceback" not in err, (code, err)


def test_hypercl_table_on_a_few_hundred_damaged_results_files(originals, tmp_path, capsys):
    _, res = originals
    rng = random.Random(SEED)
    code, want, err = _table(res, capsys)
    assert code == 0 and "HNET (reduced)" in want and err == ""
    raw = res.read_bytes()
    data = json.loads(raw)
    cases = _byte_mutants(raw, rng, 180)
    paths = [p for p in _paths(data) if p and p[0] != "digest"]
    for i in range(150):
        p = rng.choice(paths)
        value = _wrong_for(_get(data, p), rng)
        mutated = copy.deepcopy(data)
        _set(mutated, p, value)
        digest = ["kept", "recomputed", "removed"][i % 3]
        if digest == "recomputed":
            text = results_text(mutated)
        else:
            if digest == "removed":
                mutated.pop("digest")
            text = json.dumps(mutated)
        cases.append((f"{'.'.join(map(str, p))}={value!r} digest {digest}", text.encode()))
    cases += [("null", b"null"), ("list", b"[]"), ("empty", b""), ("number", b"1")]
    refused = same = 0
    for i, (what, content) in enumerate(cases):
        path = tmp_path / f"case{i:03d}.json"
        path.write_bytes(content)
        code, out, err = _table(path, capsys)
        if code == 0:  # accepted: then it must show exactly what the intact file shows
            assert out == want and err == "", what
            same += 1
        else:
            _assert_clear_refusal(code, err, path)
            with pytest.raises(ResultsFileError, match=path.name):
                read_results(path)
            refused += 1
    assert refused > len(cases) // 2 and refused + same == len(cases)  # the damage bites: most files refused


def _same_learner(a, b):
    sa, sb = a.hnet.state_dict(), b.hnet.state_dict()
    assert list(sa) == list(sb)
    assert all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)
    assert a.learned_tasks == b.learned_tasks and a.heads.num_classes == b.heads.num_classes
    assert a.history == b.history and a.strategy.name == b.strategy.name


def test_continual_learner_load_on_a_few_hundred_damaged_checkpoints(originals, tmp_path):
    ck, _ = originals
    rng = random.Random(SEED + 1)
    original = hypercl.ContinualLearner.load(ck)
    raw = ck.read_bytes()
    cases = [(what, content, None) for what, content in _byte_mutants(raw, rng, 150)]
    state = load_checkpoint(ck)
    # wrong types in a well-formed file (digest recomputed): every entry the learner is built from
    skip = ("strategy", "state")  # the strategy's own state is its load_state_dict's to check
    paths = [p for p in _paths(state) if p and p[:2] != skip and p[0] not in ("format", "version")]
    for _ in range(120):
        p = rng.choice(paths)
        value = _wrong_for(_get(state, p), rng, [torch.zeros(3), torch.ones(2, 2)])
        cases.append((f"{'.'.join(map(str, p))}={value!r}", None, (p, value)))
    refused = same = 0
    for i, (what, content, change) in enumerate(cases):
        path = tmp_path / f"case{i:03d}.pt"
        if content is not None:
            path.write_bytes(content)
        else:
            mutated = copy.deepcopy(state)
            _set(mutated, *change)
            atomic_save(mutated, path)
        try:
            back = hypercl.ContinualLearner.load(path)
        except CheckpointError as e:
            msg = str(e)
            assert "\n" not in msg and path.name in msg, (what, msg)
            refused += 1
            continue
        _same_learner(original, back)  # accepted: only where the damage changed nothing the learner holds
        same += 1
    assert refused > len(cases) // 2 and refused + same == len(cases)
