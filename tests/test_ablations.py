"""The Figure 2 ablation command and the CIFAR speed extrapolation on tiny configs (JSON + PNG written and valid)."""

from __future__ import annotations

import gzip
import json
import struct
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
