"""The Figure 2 ablation command and the CIFAR speed extrapolation on tiny configs (JSON + PNG written and valid)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from hypercl.cli import main
from hypercl.experiments.ablations import generator_param_count, size_for_ratio

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _idx(array: np.ndarray) -> bytes:
    code = 0x08  # uint8
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    """A tiny MNIST (train: 12 images per digit, test: 4 per digit) in the raw idx .gz layout."""
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, per in (("train", 12), ("t10k", 4)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        images[np.arange(len(labels)), labels, :] = 255  # a learnable cue: one bright row per digit
        (raw / f"{stem}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
        (raw / f"{stem}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return root


def _check(out: Path, stem: str) -> dict:
    data = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files
    return data


def test_compression_ablation_cli(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "abl"
    rc = main(["ablation", "--kind", "compression", "--benchmark", "split_mnist", "--quick", "--values", "0.1,1",
               "--iterations", "2", "--data-root", str(tiny_mnist), "--no-verify", "--scenario", "cl1,cl3",
               "--out", str(out)])
    assert rc == 0
    data = _check(out, "ablation_compression_split_mnist_quick")
    assert data["kind"] == "compression" and data["methods"] == ["hnet", "lstm_net"]
    assert len(data["points"]) == 4
    for p in data["points"]:
        assert p["compression_ratio"] <= p["requested_ratio"] * 1.001
        assert p["compression_ratio"] > 0.5 * p["requested_ratio"]
        assert set(p["final"]) == {"cl1", "cl3"} and all(0 <= v <= 1 for v in p["final"].values())
    assert "wrote" in capsys.readouterr().out


def test_beta_ablation_cli(tiny_mnist, tmp_path):
    out = tmp_path / "abl"
    rc = main(["ablation", "--kind", "beta", "--benchmark", "split_mnist", "--quick", "--values", "0.01,1",
               "--iterations", "2", "--data-root", str(tiny_mnist), "--no-verify", "--scenario", "cl1",
               "--out", str(out)])
    assert rc == 0
    data = _check(out, "ablation_beta_split_mnist_quick")
    assert data["kind"] == "beta" and [p["beta"] for p in data["points"]] == [0.01, 1.0]
    assert all(p["method"] == "lstm_net_iwr" for p in data["points"])


def test_cifar_speed_quick(tmp_path):
    out = tmp_path / "speed"
    rc = main(["ablation", "--kind", "cifar-speed", "--quick", "--methods", "scratch,hnet_iwr,lstm_net_grow",
               "--out", str(out)])
    assert rc == 0
    data = _check(out, "cifar_speed_quick")
    assert data["timing"]["extrapolated"] and data["protocol"]["epochs"] == 200
    for m in ("scratch", "hnet_iwr", "lstm_net_grow"):
        r = data["methods"][m]
        assert r["total_s"] > 0 and len(r["per_task"]) == 2 and r["per_task"][0]["steps_per_epoch"] == 1563
        assert r["per_task"][1]["steps_per_epoch"] == 157
    assert data["methods"]["hnet_iwr"]["fisher_s"] > 0 and data["methods"]["scratch"]["fisher_s"] == 0


def test_size_for_ratio_hits_budget():
    h = {"generator": "lstm", "hidden_size": 64, "chunk_size": 1, "task_emb_dim": 8, "chunk_emb_dim": 8}
    for r in (0.3, 1.0):
        s = size_for_ratio(20000, h, r, num_tasks=3)
        assert s["params"] <= r * 20000
        assert s["params"] == generator_param_count(20000, "lstm", s["chunk_size"], 8, 8, s["hidden_size"], 3)
        bigger = generator_param_count(20000, "lstm", s["chunk_size"] + 1, 8, 8, s["hidden_size"], 3)
        assert bigger > r * 20000 or s["chunk_size"] == 20000


def _beta_argv(tiny_mnist: Path, out: Path) -> list:
    return ["ablation", "--kind", "beta", "--benchmark", "split_mnist", "--quick", "--values", "0.01",
            "--iterations", "2", "--data-root", str(tiny_mnist), "--no-verify", "--scenario", "cl1", "--out", str(out)]


def _no_space_for(monkeypatch, suffix: str) -> None:
    import errno

    import hypercl.checkpoint as ck

    real = ck._write_bytes

    def write(path, f, data):
        if path.suffix == suffix:
            f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, f, data)

    monkeypatch.setattr(ck, "_write_bytes", write)


def _single_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_ablation_on_a_full_disk_ends_in_one_line(tiny_mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "abl"
    _no_space_for(monkeypatch, ".json")
    assert main(_beta_argv(tiny_mnist, out)) == 4
    line = _single_line(capsys.readouterr().err)
    assert "ablation_beta_split_mnist_quick.json" in line and "hypercl ablation" in line
    assert not list(out.glob("*.json")) and not list(out.glob(".*.tmp"))


def test_an_ablation_plot_that_cannot_be_written_is_a_warning(tiny_mnist, tmp_path, capsys, monkeypatch):
    out = tmp_path / "abl"
    _no_space_for(monkeypatch, ".png")
    assert main(_beta_argv(tiny_mnist, out)) == 0
    cap = capsys.readouterr()
    assert "warning: plot not written" in _single_line(cap.err)
    assert (out / "ablation_beta_split_mnist_quick.json").is_file() and "wrote" in cap.out


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_ablation_is_one_line(tiny_mnist, tmp_path, capsys, monkeypatch, sig, code):
    import hypercl.experiments.ablations as ablations

    def interrupted(*a, **k):
        os.kill(os.getpid(), sig)
        time.sleep(1)

    monkeypatch.setattr(ablations, "_seed_points", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see test_nothing_lost's Ctrl-C test
    try:
        rc = main(_beta_argv(tiny_mnist, tmp_path / "abl"))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert rc == code
    line = _single_line(capsys.readouterr().err)
    assert ("SIGTERM" if sig == signal.SIGTERM else "SIGINT") in line and "run it again: hypercl ablation" in line
