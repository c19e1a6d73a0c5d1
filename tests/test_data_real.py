"""hypercl.data on the real MNIST files (found where the library looks; skipped, saying where, when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import mnist_root, mnist_skip_reason

from hypercl.data import PermutedImages, PermutedMNIST, SplitMNIST, get_benchmark, load_mnist
from hypercl.data import download as dl_mod
from hypercl.data.integrity import md5sum
from hypercl.data.mnist import MNIST_MD5

DATA = mnist_root()
RAW = Path(DATA) / "MNIST" / "raw" if DATA else None
pytestmark = pytest.mark.skipif(
    DATA is None or not (RAW / "train-images-idx3-ubyte.gz").is_file(),
    reason=mnist_skip_reason(),
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, timeout):
        raise AssertionError(f"test tried to reach the network: {url}")

    monkeypatch.setattr(dl_mod, "urlopen", refuse)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(DATA, download=False)


def test_real_mnist_md5():
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        assert md5sum(RAW / name) == MNIST_MD5[name]


def test_real_mnist_arrays(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_images.dtype == torch.uint8 and mnist.test_images.dtype == torch.uint8
    assert mnist.train_labels.dtype == torch.int64 and mnist.test_labels.shape == (10000,)
    assert torch.bincount(mnist.train_labels, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(mnist.test_labels, minlength=10).tolist() == TEST_COUNTS
    assert sum(TRAIN_COUNTS) == 60000 and sum(TEST_COUNTS) == 10000
    assert int(mnist.train_images.max()) == 255 and int(mnist.train_images.min()) == 0


def test_real_mnist_default_root_is_env(monkeypatch, mnist):
    monkeypatch.setenv("HYPERCL_DATA", DATA)
    assert torch.equal(load_mnist(download=False).test_labels, mnist.test_labels)


def test_real_split_mnist(mnist):
    bench = SplitMNIST(arrays=mnist)
    assert bench.num_tasks == 5 and bench.input_dim == 784 and bench.total_classes == 10
    for t, task in enumerate(bench.tasks):
        assert task.class_offset == 2 * t and task.num_classes == 2
        assert len(task.x_train) == TRAIN_COUNTS[2 * t] + TRAIN_COUNTS[2 * t + 1]
        assert len(task.x_test) == TEST_COUNTS[2 * t] + TEST_COUNTS[2 * t + 1]
        assert set(task.y_train.unique().tolist()) == {0, 1} and set(task.y_test.unique().tolist()) == {0, 1}
        digits = task.global_labels(task.y_train)
        assert torch.bincount(digits, minlength=10)[2 * t: 2 * t + 2].tolist() == TRAIN_COUNTS[2 * t: 2 * t + 2]
        mask = (mnist.test_labels == 2 * t) | (mnist.test_labels == 2 * t + 1)
        assert torch.equal(task.x_test, mnist.test_images[mask].reshape(-1, 784).float() / 255)
        assert float(task.x_train.max()) == 1.0 and float(task.x_train.min()) == 0.0


def test_real_split_mnist_from_root_with_limits():
    bench = get_benchmark("split_mnist", root=DATA, download=False, max_train_per_task=50, max_test_per_task=20)
    assert [len(t.x_train) for t in bench] == [50] * 5 and [len(t.y_test) for t in bench] == [20] * 5


def test_real_permuted_mnist(mnist):
    n = 2000
    bench = PermutedMNIST(num_tasks=3, arrays=mnist, seed=0, max_train_per_task=n, max_test_per_task=500)
    padded = torch.zeros(n, 32, 32)
    padded[:, 2:30, 2:30] = mnist.train_images[:n].float() / 255
    padded = padded.reshape(n, 1024)
    idx = torch.arange(n)
    x0, x1 = bench[0].x_train[idx], bench[1].x_train[idx]
    assert torch.equal(x0, padded)  # task 0 = identity
    assert not torch.equal(x1, x0)
    assert torch.equal(torch.sort(x1, dim=1).values, torch.sort(x0, dim=1).values)  # same pixels per image
    assert torch.equal(bench[1].y_train, mnist.train_labels[:n]) and bench[2].class_offset == 20
    same = PermutedMNIST(num_tasks=3, arrays=mnist, seed=0, max_train_per_task=10, max_test_per_task=10)
    other = PermutedMNIST(num_tasks=3, arrays=mnist, seed=1, max_train_per_task=10, max_test_per_task=10)
    assert torch.equal(same[1].x_train[torch.arange(10)], x1[:10])
    assert not torch.equal(other[1].x_train[torch.arange(10)], x1[:10])
    assert not torch.equal(other.permutations[1], bench.permutations[1])


def test_real_permuted_mnist_full_is_lazy(mnist):
    bench = PermutedMNIST(arrays=mnist)  # 10 tasks, full size
    assert bench.num_tasks == 10 and bench.total_classes == 100 and bench.input_dim == 1024
    bases = {task.x_train.base.data_ptr() for task in bench} | {bench[0].x_train.base.data_ptr()}
    assert len(bases) == 1 and all(isinstance(t.x_train, PermutedImages) for t in bench)
    assert bench[9].x_train.shape == (60000, 1024) and bench[9].x_test.shape == (10000, 1024)
    batch = bench[9].x_train[torch.tensor([0, 59999])]
    assert batch.shape == (2, 1024) and batch.dtype == torch.float32
