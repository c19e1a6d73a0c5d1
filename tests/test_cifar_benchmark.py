"""Split CIFAR-10/100 on small hand-made CIFAR files, and the batch augmentation random_crop_flip."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hypercl.data import (
    BENCHMARKS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DatasetIntegrityError,
    DatasetNotFoundError,
    SplitCIFAR10_100,
    get_benchmark,
    random_crop_flip,
)

N10_PER_BATCH = 12  # CIFAR-10: 5 train batches + 1 test batch of this size
N100_REPEATS = 2  # CIFAR-100 train: every fine class this many times (test: once)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def batch(labels: np.ndarray, label_key: str, seed: int) -> dict:
    """One CIFAR batch dict in the original format (bytes keys, data uint8 (N, 3072), labels a list)."""
    rng = np.random.default_rng(seed)
    out = {
        b"batch_label": b"synthetic",
        label_key.encode(): [int(v) for v in labels],
        b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    if label_key == "fine_labels":
        out[b"coarse_labels"] = [int(v) // 5 for v in labels]
    return out


def write_small_cifar(root: Path, with_100: bool = True) -> dict:
    """Small CIFAR-10 and CIFAR-100 folders under ``root``; returns {dataset: {split: (uint8 images, labels)}}."""
    rng = np.random.default_rng(0)
    c10 = root / "cifar-10-batches-py"
    train = [batch(rng.integers(0, 10, N10_PER_BATCH), "labels", seed=i) for i in range(5)]
    for i, b in enumerate(train):
        write_pickle(c10 / f"data_batch_{i + 1}", b)
    test = batch(rng.integers(0, 10, N10_PER_BATCH), "labels", seed=10)
    write_pickle(c10 / "test_batch", test)
    out = {"c10": {"train": train, "test": [test]}}
    if with_100:
        c100 = root / "cifar-100-python"
        tr = batch(rng.permutation(np.repeat(np.arange(100), N100_REPEATS)), "fine_labels", seed=20)
        te = batch(rng.permutation(100), "fine_labels", seed=21)
        write_pickle(c100 / "train", tr)
        write_pickle(c100 / "test", te)
        out["c100"] = {"train": [tr], "test": [te]}
    arrays = {}
    for ds, splits in out.items():
        key = b"labels" if ds == "c10" else b"fine_labels"
        arrays[ds] = {
            split: (torch.from_numpy(np.concatenate([b[b"data"] for b in bs]).reshape(-1, 3, 32, 32)),
                    torch.tensor(sum((b[key] for b in bs), []), dtype=torch.int64))
            for split, bs in splits.items()
        }
    return arrays


def normalised(images: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean).reshape(1, 3, 1, 1)
    s = torch.tensor(std).reshape(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    return root, write_small_cifar(root)


def test_split_cifar_tasks_labels_and_offsets(cifar_root):
    root, raw = cifar_root
    bench = SplitCIFAR10_100(root, download=False, verify=False)
    assert bench.name == "split_cifar" and bench.num_tasks == len(bench) == 6
    assert bench.classes_per_task == 10 and bench.total_classes == 60
    assert bench.input_shape == (3, 32, 32) and bench.input_dim == 3072
    assert [t.class_offset for t in bench] == [0, 10, 20, 30, 40, 50]
    assert [t.num_classes for t in bench] == [10] * 6
    assert [t.name for t in bench] == ["split_cifar/cifar10"] + [f"split_cifar/cifar100/{lo}-{lo + 9}"
                                                                 for lo in range(0, 50, 10)]
    for split in ("train", "test"):
        x10, y10 = raw["c10"][split]
        task0 = bench[0]
        assert torch.equal(getattr(task0, f"y_{split}"), y10)  # all of CIFAR-10, file order
        assert torch.equal(getattr(task0, f"x_{split}"), normalised(x10, CIFAR10_MEAN, CIFAR10_STD))
        x100, y100 = raw["c100"][split]
        for k in range(1, 6):
            task = bench[k]
            x, y = getattr(task, f"x_{split}"), getattr(task, f"y_{split}")
            assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
            assert y.min() >= 0 and y.max() <= 9  # local labels
            fine = torch.arange(10 * (k - 1), 10 * k)  # CIFAR-100 fine ids in numeric order
            keep = torch.isin(y100, fine)
            assert torch.equal(y, y100[keep] - 10 * (k - 1))
            assert torch.equal(task.global_labels(y), y100[keep] + 10)  # global id = fine id + 10
            assert torch.equal(x, normalised(x100[keep], CIFAR100_MEAN, CIFAR100_STD))
            assert len(y) == (N100_REPEATS if split == "train" else 1) * 10
            assert sorted(set(y.tolist())) == list(range(10))
    # fine classes 50..99 are not used
    used = torch.cat([bench[k].global_labels(bench[k].y_train) - 10 for k in range(1, 6)])
    assert used.max() == 49


def test_normalisation_statistics_and_black_fill(cifar_root):
    root, raw = cifar_root
    bench = SplitCIFAR10_100(root, download=False, verify=False, num_tasks=2)
    raw_bench = SplitCIFAR10_100(root, download=False, verify=False, num_tasks=2, normalize=False)
    for t, (mean, std) in enumerate([(CIFAR10_MEAN, CIFAR10_STD), (CIFAR100_MEAN, CIFAR100_STD)]):
        plain = raw_bench[t].x_train
        assert plain.min() >= 0.0 and plain.max() <= 1.0
        m = torch.tensor(mean).reshape(1, 3, 1, 1)
        s = torch.tensor(std).reshape(1, 3, 1, 1)
        assert torch.allclose(bench[t].x_train, (plain - m) / s, atol=1e-6)
        # uniform uint8 pixels: the normalised per-channel mean is ~ (0.5 - mean) / std
        got = bench[t].x_train.mean(dim=(0, 2, 3))
        assert torch.allclose(got, (0.5 - torch.tensor(mean)) / torch.tensor(std), atol=0.05)
        black = normalised(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), mean, std).flatten()
        assert torch.allclose(bench.pad_fill(t), black, atol=1e-6)
    assert bench.stats == [(CIFAR10_MEAN, CIFAR10_STD), (CIFAR100_MEAN, CIFAR100_STD)]
    assert CIFAR10_MEAN == (0.4914, 0.4822, 0.4465) and CIFAR100_STD == (0.2673, 0.2564, 0.2762)


def test_limits_num_tasks_and_get_benchmark(cifar_root, tmp_path):
    root, raw = cifar_root
    small = get_benchmark("Split-CIFAR", root=root, download=False, verify=False,
                          max_train_per_task=3, max_test_per_task=2)
    assert isinstance(small, SplitCIFAR10_100) and BENCHMARKS["split_cifar"] is SplitCIFAR10_100
    assert [len(t.y_train) for t in small] == [3] * 6 and [len(t.y_test) for t in small] == [2] * 6
    assert torch.equal(small[0].y_train, raw["c10"]["train"][1][:3])
    full = SplitCIFAR10_100(root, download=False, verify=False, num_tasks=11)
    assert full.total_classes == 110 and full[10].class_offset == 100
    # one task needs no CIFAR-100 files
    only10 = tmp_path / "only10"
    write_small_cifar(only10, with_100=False)
    assert SplitCIFAR10_100(only10, download=False, verify=False, num_tasks=1).num_tasks == 1
    with pytest.raises(DatasetNotFoundError, match="CIFAR-100"):
        SplitCIFAR10_100(only10, download=False, verify=False)
    with pytest.raises(ValueError, match="num_tasks"):
        SplitCIFAR10_100(root, download=False, verify=False, num_tasks=12)
    with pytest.raises(DatasetIntegrityError, match="md5"):  # hand-made files are not the official ones
        SplitCIFAR10_100(root, download=False, verify=True)


# --------------------------------------------------------------------------- augmentation
def find_crops(out: torch.Tensor, x: torch.Tensor, padding: int):
    """For every output image, all (offset_y, offset_x, flipped) under which it is a crop of the padded input."""
    h, w = x.shape[-2:]
    windows = F.pad(x, (padding,) * 4).unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W)
    plain = (windows == out[:, :, None, None]).all(dim=(1, 4, 5))  # (B, 2p+1, 2p+1)
    flipped = (windows == out.flip(-1)[:, :, None, None]).all(dim=(1, 4, 5))
    return torch.stack([plain, flipped], dim=-1)  # (B, 2p+1, 2p+1, 2)


def test_random_crop_flip_is_a_crop_of_the_padded_input():
    b, p = 1000, 4
    x = torch.randn(b, 2, 8, 8)
    out = random_crop_flip(x, padding=p, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    matches = find_crops(out, x, p)
    assert (matches.flatten(1).sum(1) == 1).all()  # every image is exactly one crop (+ flip) of its padded input
    idx = matches.flatten(1).float().argmax(1)
    oy, ox, flip = idx // ((2 * p + 1) * 2), (idx // 2) % (2 * p + 1), (idx % 2).bool()
    padded = F.pad(x, (p,) * 4)
    for i in range(5):  # a direct slice for a few samples
        crop = padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert set(oy.tolist()) == set(range(2 * p + 1)) and set(ox.tolist()) == set(range(2 * p + 1))
    assert 0.42 < flip.float().mean().item() < 0.58  # flips with probability ~0.5


def test_random_crop_flip_seeded_fill_and_errors():
    x = torch.rand(64, 3, 8, 8)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    fill = (-1.0, -2.0, -3.0)  # per-channel fill: every output value is an input value or its channel's fill
    out = random_crop_flip(x, padding=4, fill=fill, generator=torch.Generator().manual_seed(0))
    for ch, f in enumerate(fill):
        v = out[:, ch]
        assert ((v == f) | (v >= 0)).all() and (v == f).any()
    shift = torch.tensor(fill).reshape(1, 3, 1, 1)  # fill-padding is zero-padding of x - fill
    assert (find_crops(out - shift, x - shift, 4).flatten(1).sum(1) == 1).all()
    u8 = (x * 255).to(torch.uint8)
    assert random_crop_flip(u8, generator=torch.Generator().manual_seed(0)).dtype == torch.uint8
    no_pad = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(no_pad[i], x[i]) or torch.equal(no_pad[i], x[i].flip(-1)) for i in range(64))
    with pytest.raises(ValueError, match="B, C, H, W"):
        random_crop_flip(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="fill"):
        random_crop_flip(x, fill=(0.0, 1.0))
