"""hypercl.data on small files written in the real formats (no network, no real datasets)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import hypercl.data as hd
from hypercl.data import (
    DatasetIntegrityError,
    DatasetNotFoundError,
    PermutedImages,
    PermutedMNIST,
    SplitMNIST,
    TaskData,
    get_benchmark,
    load_cifar10,
    load_cifar100,
    load_mnist,
    read_idx,
    resolve_data_root,
)
from hypercl.data import cifar as cifar_mod
from hypercl.data import download as dl_mod
from hypercl.data import mnist as mnist_mod

MNIST_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


# ----------------------------------------------------------------------------- writers
def idx_bytes(array: np.ndarray) -> bytes:
    """Independent idx writer: 0, 0, type code, ndim, big-endian uint32 dims, big-endian data."""
    code = IDX_CODES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8)[rng.permutation(n_train)],
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8)[rng.permutation(n_test)],
    }


def write_mnist(root: Path, arrays: dict, gz: bool = True) -> Path:
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in MNIST_STEMS.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key], gz)
    return folder


def cifar_batch(n: int, label_key: str, num_classes: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"synthetic batch",
        label_key.encode(): [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == "fine_labels":
        batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, n)]
    return batch


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def write_cifar10(root: Path, n: int = 6) -> dict:
    folder = root / "cifar-10-batches-py"
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(n, "labels", 10, seed=i)
        write_pickle(folder / name, batches[name])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": n})
    return batches


def write_cifar100(root: Path, n: int = 8) -> dict:
    folder = root / "cifar-100-python"
    batches = {name: cifar_batch(n, "fine_labels", 100, seed=i) for i, name in enumerate(["train", "test"])}
    for name, batch in batches.items():
        write_pickle(folder / name, batch)
    write_pickle(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return batches


def tar_gz(files: dict, extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class FakeResponse:
    def __init__(self, data: bytes, fail_after=None, content_length=None):
        self._buf = io.BytesIO(data)
        self._fail_after = fail_after
        self.headers = {} if content_length is None else {"Content-Length": str(content_length)}

    def read(self, n=-1):
        if self._fail_after is not None and self._buf.tell() >= self._fail_after:
            raise ConnectionResetError("connection reset by peer")
        if self._fail_after is not None:
            n = min(n, self._fail_after - self._buf.tell()) if n > 0 else self._fail_after - self._buf.tell()
        return self._buf.read(n)

    def close(self):
        pass


def serve(monkeypatch, table: dict, calls=None):
    """Replace the network: urls in ``table`` return its bytes, any other url raises URLError."""

    def fake_urlopen(url, timeout):
        if calls is not None:
            calls.append(url)
        if url not in table:
            raise urllib.error.URLError("offline (test)")
        value = table[url]
        return value if isinstance(value, FakeResponse) else FakeResponse(value)

    monkeypatch.setattr(dl_mod, "urlopen", fake_urlopen)


def files_under(path: Path) -> list:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, timeout):
        raise AssertionError(f"test tried to reach the network: {url}")

    monkeypatch.setattr(dl_mod, "urlopen", refuse)


# ----------------------------------------------------------------------------- data root
def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HYPERCL_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "hypercl" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_root() == tmp_path / "xdg" / "hypercl" / "data"
    monkeypatch.setenv("HYPERCL_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv("HYPERCL_DATA", "")
    assert resolve_data_root() == tmp_path / "xdg" / "hypercl" / "data"
    assert not (tmp_path / "xdg").exists()  # resolving creates nothing


# ----------------------------------------------------------------------------- idx
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3),
        np.array([-70000, 1, 2**31 - 1], dtype=np.int32),
        np.array([[1.5, -2.25], [3e-3, 7.0]], dtype=np.float32),
        np.array([[-300, 300]], dtype=np.int16),
        np.array([-1.0, 2.0], dtype=np.float64),
        np.zeros((0, 4), dtype=np.uint8),
    ],
)
def test_read_idx_roundtrip(tmp_path, array, gz):
    out = read_idx(write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array, gz))
    assert tuple(out.shape) == array.shape
    assert out.numpy().dtype == array.dtype
    np.testing.assert_array_equal(out.numpy(), array)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_truncated_or_padded(tmp_path, gz):
    raw = idx_bytes(np.ones((3, 28, 28), dtype=np.uint8))
    for name, data in [("short", raw[:-5]), ("long", raw + b"\0"), ("header", raw[:10]), ("tiny", raw[:2])]:
        path = tmp_path / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(DatasetIntegrityError, match=name):
            read_idx(path)


def test_read_idx_bad_magic_and_corrupt_gzip(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x01\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetIntegrityError, match="magic"):
        read_idx(bad)
    unknown = tmp_path / "unknown"
    unknown.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetIntegrityError, match="magic"):
        read_idx(unknown)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(idx_bytes(np.ones((50, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DatasetIntegrityError, match="broken.gz"):
        read_idx(broken)


# ----------------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_reads_exactly(tmp_path, gz):
    arrays = fake_mnist()
    write_mnist(tmp_path, arrays, gz=gz)
    out = load_mnist(tmp_path, download=False, verify=False)
    for key, value in arrays.items():
        got = getattr(out, key)
        assert got.dtype == (torch.uint8 if "images" in key else torch.int64)
        np.testing.assert_array_equal(got.numpy(), value)


def test_load_mnist_uses_env_root(tmp_path, monkeypatch):
    arrays = fake_mnist(n_train=10, n_test=10)
    write_mnist(tmp_path, arrays)
    monkeypatch.setenv("HYPERCL_DATA", str(tmp_path))
    assert load_mnist(download=False, verify=False).train_images.shape == (10, 28, 28)


def test_load_mnist_wrong_md5(tmp_path):
    folder = write_mnist(tmp_path, fake_mnist())
    with pytest.raises(DatasetIntegrityError) as info:
        load_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert "md5" in msg and "expected" in msg and "actual" in msg
    name = next(n for n in mnist_mod.MNIST_MD5 if n in msg)
    assert str(folder / name) in msg
    assert mnist_mod.MNIST_MD5[name] in msg
    assert hd.integrity.md5sum(folder / name) in msg


def test_load_mnist_md5_ok_when_matching(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path, fake_mnist())
    table = {p.name: md5(p.read_bytes()) for p in folder.iterdir()}
    monkeypatch.setattr(mnist_mod, "MNIST_MD5", table)
    assert load_mnist(tmp_path, download=False).test_images.shape == (20, 28, 28)


def test_load_mnist_bad_structure(tmp_path):
    arrays = fake_mnist()
    arrays["train_labels"] = arrays["train_labels"][:-1]
    write_mnist(tmp_path, arrays)
    with pytest.raises(DatasetIntegrityError, match="train-labels"):
        load_mnist(tmp_path, download=False, verify=False)
    arrays = fake_mnist()
    arrays["test_labels"][0] = 10
    write_mnist(tmp_path, arrays)
    with pytest.raises(DatasetIntegrityError, match="outside"):
        load_mnist(tmp_path, download=False, verify=False)


def test_mnist_missing_download_disabled(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for stem in MNIST_STEMS.values():
        assert f"{stem}.gz" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "HYPERCL_DATA" in msg and "--data-root" in msg
    assert not (tmp_path / "MNIST").exists()


def test_mnist_offline_names_missing_files_only(tmp_path, monkeypatch):
    arrays = fake_mnist()
    folder = write_mnist(tmp_path, arrays)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    calls = []
    serve(monkeypatch, {}, calls)
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path, verify=False)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "train-images-idx3-ubyte.gz" not in msg
    assert str(folder) in msg and "offline" in msg
    assert calls == [m + "t10k-images-idx3-ubyte.gz" for m in mnist_mod.MNIST_MIRRORS]
    assert len(list(folder.iterdir())) == 3  # nothing partial left behind


def test_mnist_download_with_mirror_fallback(tmp_path, monkeypatch):
    arrays = fake_mnist()
    blobs = {f"{stem}.gz": gzip.compress(idx_bytes(arrays[key])) for key, stem in MNIST_STEMS.items()}
    monkeypatch.setattr(mnist_mod, "MNIST_MD5", {name: md5(b) for name, b in blobs.items()})
    second = mnist_mod.MNIST_MIRRORS[1]
    serve(monkeypatch, {second + name: b for name, b in blobs.items()})  # first mirror is down
    out = load_mnist(tmp_path)
    np.testing.assert_array_equal(out.train_images.numpy(), arrays["train_images"])
    assert files_under(tmp_path / "MNIST" / "raw") == sorted(blobs)
    for name, blob in blobs.items():
        assert (tmp_path / "MNIST" / "raw" / name).read_bytes() == blob


def test_partial_download_leaves_nothing(tmp_path, monkeypatch):
    data = b"x" * 5000
    url = "https://example.invalid/f.bin"
    serve(monkeypatch, {url: FakeResponse(data, fail_after=1234)})
    with pytest.raises(dl_mod.DownloadFailed, match="reset"):
        dl_mod.download_file([url], tmp_path / "f.bin", md5(data))
    assert files_under(tmp_path) == []
    serve(monkeypatch, {url: FakeResponse(data[:100], content_length=len(data))})
    with pytest.raises(dl_mod.DownloadFailed, match="truncated"):
        dl_mod.download_file([url], tmp_path / "f.bin", None)
    assert files_under(tmp_path) == []


def test_download_wrong_md5_leaves_nothing(tmp_path, monkeypatch):
    url = "https://example.invalid/f.bin"
    serve(monkeypatch, {url: b"not the file"})
    with pytest.raises(DatasetIntegrityError) as info:
        dl_mod.download_file([url], tmp_path / "f.bin", "0" * 32)
    assert "0" * 32 in str(info.value) and md5(b"not the file") in str(info.value)
    assert files_under(tmp_path) == []
    dl_mod.download_file([url], tmp_path / "f.bin", md5(b"not the file"))
    assert (tmp_path / "f.bin").read_bytes() == b"not the file"


# ----------------------------------------------------------------------------- CIFAR
def test_load_cifar10_reads_exactly(tmp_path):
    batches = write_cifar10(tmp_path)
    out = load_cifar10(tmp_path, download=False, verify=False)
    train = [batches[f"data_batch_{k}"] for k in range(1, 6)]
    assert out.train_images.shape == (30, 3, 32, 32) and out.train_images.dtype == torch.uint8
    assert out.train_labels.dtype == torch.int64 and out.test_labels.shape == (6,)
    np.testing.assert_array_equal(out.train_images.numpy().reshape(30, -1), np.concatenate([b[b"data"] for b in train]))
    np.testing.assert_array_equal(out.train_labels.numpy(), sum((b[b"labels"] for b in train), []))
    np.testing.assert_array_equal(out.test_images.numpy().reshape(6, -1), batches["test_batch"][b"data"])
    # channel-major layout: first 1024 bytes are the red plane
    np.testing.assert_array_equal(out.test_images[0, 0].numpy().ravel(), batches["test_batch"][b"data"][0, :1024])
    assert out.class_names[0] == "airplane" and len(out.class_names) == 10


def test_load_cifar100_reads_exactly(tmp_path):
    batches = write_cifar100(tmp_path)
    out = load_cifar100(tmp_path, download=False, verify=False)
    assert out.train_images.shape == (8, 3, 32, 32) and out.test_images.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(out.train_images.numpy().reshape(8, -1), batches["train"][b"data"])
    np.testing.assert_array_equal(out.test_labels.numpy(), batches["test"][b"fine_labels"])
    assert out.class_names[:2] == ("c0", "c1") and len(out.class_names) == 100


def test_cifar_str_keys_accepted(tmp_path):
    write_cifar100(tmp_path)
    batch = {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [99, 0]}
    write_pickle(tmp_path / "cifar-100-python" / "test", batch)
    assert load_cifar100(tmp_path, download=False, verify=False).test_labels.tolist() == [99, 0]


def test_cifar_wrong_md5(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DatasetIntegrityError) as info:
        load_cifar10(tmp_path, download=False)
    msg = str(info.value)
    assert "data_batch_1" in msg and "c99cafc152244af753f735de768cd75f" in msg and "actual" in msg


@pytest.mark.parametrize(
    "bad",
    [
        {b"data": np.zeros((2, 3072), np.int32), b"labels": [0, 1]},
        {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]},
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
        {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
        {b"data": np.zeros((2, 3072), np.uint8)},
        [1, 2, 3],
    ],
)
def test_cifar_bad_structure(tmp_path, bad):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_3", bad)
    with pytest.raises(DatasetIntegrityError, match="data_batch_3"):
        load_cifar10(tmp_path, download=False, verify=False)


def test_cifar_truncated_and_malicious_pickles(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetIntegrityError, match="test_batch"):
        load_cifar10(tmp_path, download=False, verify=False)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    write_pickle(path, {b"data": Evil(), b"labels": []})
    with pytest.raises(DatasetIntegrityError, match="not allowed"):
        load_cifar10(tmp_path, download=False, verify=False)


def test_cifar_missing_download_disabled(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar10(tmp_path, download=False)
    msg = str(info.value)
    for name in ["data_batch_1", "data_batch_5", "test_batch"]:
        assert name in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "cifar-10-python.tar.gz" in msg
    assert "HYPERCL_DATA" in msg
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path, download=False)


def test_cifar_offline_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    serve(monkeypatch, {}, calls)
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar100(tmp_path)
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert "offline" in str(info.value) and "train" in str(info.value)
    assert files_under(tmp_path) == []


def _cifar10_archive(tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    batches = write_cifar10(src, n=3)
    files = {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in (src / "cifar-10-batches-py").iterdir()}
    return tar_gz(files), batches


def test_cifar_extracts_archive(tmp_path):
    blob, batches = _cifar10_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(blob)
    out = load_cifar10(root, download=False, verify=False)
    np.testing.assert_array_equal(out.test_images.numpy().reshape(3, -1), batches["test_batch"][b"data"])
    assert "cifar-10-batches-py/data_batch_5" in files_under(root)
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # temp folder removed


def test_cifar_download_archive(tmp_path, monkeypatch):
    blob, batches = _cifar10_archive(tmp_path)
    spec = dataclasses.replace(cifar_mod.CIFAR10, archive_md5=md5(blob))
    monkeypatch.setattr(cifar_mod, "CIFAR10", spec)
    serve(monkeypatch, {spec.url: blob})
    root = tmp_path / "root"
    out = load_cifar10(root, verify=False)
    assert out.train_images.shape == (15, 3, 32, 32)
    assert (root / "cifar-10-python.tar.gz").read_bytes() == blob


def test_cifar_download_wrong_md5(tmp_path, monkeypatch):
    blob, _ = _cifar10_archive(tmp_path)
    serve(monkeypatch, {cifar_mod.CIFAR10.url: blob})
    root = tmp_path / "root"
    with pytest.raises(DatasetIntegrityError, match="c58f30108f718f92721af3b95e74349a"):
        load_cifar10(root, verify=False)
    assert files_under(root) == []


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "outside", "symlink"])
def test_cifar_unsafe_archive_rejected(tmp_path, kind):
    good = {"cifar-10-batches-py/test_batch": b"x"}
    extra = None
    if kind == "dotdot":
        good["cifar-10-batches-py/../../evil"] = b"evil"
    elif kind == "absolute":
        good[str(tmp_path / "evil")] = b"evil"
    elif kind == "outside":
        good["other/evil"] = b"evil"
    else:
        extra = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        extra.type = tarfile.SYMTYPE
        extra.linkname = "/etc/passwd"
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(tar_gz(good, extra))
    with pytest.raises(DatasetIntegrityError, match="cifar-10-python.tar.gz"):
        load_cifar10(root, download=False, verify=False)
    assert not (tmp_path / "evil").exists()
    assert files_under(root) == ["cifar-10-python.tar.gz"]


def test_cifar_corrupt_archive(tmp_path):
    blob, _ = _cifar10_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetIntegrityError, match="corrupt"):
        load_cifar10(root, download=False, verify=False)
    with pytest.raises(DatasetIntegrityError, match="c58f30108f718f92721af3b95e74349a"):
        load_cifar10(root, download=False, verify=True)
    assert files_under(root) == ["cifar-10-python.tar.gz"]


# ----------------------------------------------------------------------------- benchmarks
@pytest.fixture(scope="module")
def small_mnist():
    a = fake_mnist(n_train=60, n_test=30, seed=3)
    return hd.MNISTArrays(
        torch.from_numpy(a["train_images"]), torch.from_numpy(a["train_labels"]).long(),
        torch.from_numpy(a["test_images"]), torch.from_numpy(a["test_labels"]).long(),
    )


def test_split_mnist_synthetic(small_mnist):
    bench = SplitMNIST(arrays=small_mnist)
    assert (bench.num_tasks, bench.input_dim, bench.classes_per_task, bench.total_classes) == (5, 784, 2, 10)
    assert bench.name == "split_mnist" and len(bench) == 5
    for t, task in enumerate(bench.tasks):
        assert (task.num_classes, task.class_offset) == (2, 2 * t)
        for split in ("train", "test"):
            x, y = getattr(task, f"x_{split}"), getattr(task, f"y_{split}")
            images, labels = getattr(small_mnist, f"{split}_images"), getattr(small_mnist, f"{split}_labels")
            mask = (labels == 2 * t) | (labels == 2 * t + 1)
            assert x.dtype == torch.float32 and x.shape == (int(mask.sum()), 784)
            assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
            assert torch.equal(task.global_labels(y), labels[mask])
            assert torch.equal(x, images[mask].reshape(-1, 784).float() / 255)
            assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_split_mnist_max_per_task_and_root(tmp_path, small_mnist):
    bench = SplitMNIST(arrays=small_mnist, max_train_per_task=3, max_test_per_task=2)
    full = SplitMNIST(arrays=small_mnist)
    for small, big in zip(bench, full):
        assert torch.equal(small.x_train, big.x_train[:3]) and torch.equal(small.y_test, big.y_test[:2])
    write_mnist(tmp_path, {k: getattr(small_mnist, k).numpy().astype(np.uint8) for k in MNIST_STEMS})
    from_disk = SplitMNIST(tmp_path, download=False, verify=False)
    assert all(torch.equal(a.x_test, b.x_test) for a, b in zip(from_disk, full))


def test_permuted_mnist_synthetic(small_mnist):
    bench = PermutedMNIST(num_tasks=4, arrays=small_mnist, seed=5)
    assert (bench.num_tasks, bench.input_dim, bench.classes_per_task, bench.total_classes) == (4, 1024, 10, 40)
    padded = torch.zeros(60, 32, 32)
    padded[:, 2:30, 2:30] = small_mnist.train_images.float() / 255
    padded = padded.reshape(60, 1024)
    idx = torch.arange(60)
    assert torch.equal(bench[0].x_train[idx], padded)  # task 0 is the identity
    for t, task in enumerate(bench):
        assert isinstance(task.x_train, PermutedImages) and task.class_offset == 10 * t
        assert task.x_train.shape == (60, 1024) and len(task.x_test) == 30
        assert torch.equal(task.y_train, small_mnist.train_labels)
        perm = bench.permutations[t]
        assert torch.equal(torch.sort(perm).values, torch.arange(1024))
        assert torch.equal(task.x_train[idx], padded[:, perm])
        assert torch.equal(task.x_train.materialize(), padded[:, perm])
        assert torch.equal(task.x_train[7], padded[7, perm])
        assert torch.equal(task.x_train[2:5], padded[2:5, perm])
        assert task.x_train.base is bench[0].x_train.base  # one shared copy of the images
    assert not torch.equal(bench.permutations[1], bench.permutations[2])
    assert torch.equal(bench.permutations[2], hd.task_permutation(5, 2, 1024))


def test_permuted_mnist_seeds_and_options(small_mnist):
    a = PermutedMNIST(num_tasks=3, arrays=small_mnist, seed=0)
    b = PermutedMNIST(num_tasks=3, arrays=small_mnist, seed=0)
    c = PermutedMNIST(num_tasks=3, arrays=small_mnist, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.permutations, b.permutations))
    assert not torch.equal(a.permutations[1], c.permutations[1])
    assert not torch.equal(a.permutations[2], c.permutations[1])  # seeds don't share tasks
    d = PermutedMNIST(num_tasks=2, arrays=small_mnist, first_identity=False, pad_to=None,
                      max_train_per_task=7, max_test_per_task=4)
    assert d.input_dim == 784 and len(d[0].x_train) == 7 and len(d[0].y_test) == 4
    assert not torch.equal(d.permutations[0], torch.arange(784))
    with pytest.raises(ValueError):
        PermutedMNIST(num_tasks=1, arrays=small_mnist, pad_to=20)


def test_permuted_to_device_keeps_sharing(small_mnist):
    bench = PermutedMNIST(num_tasks=3, arrays=small_mnist)
    moved = [task.to("meta") for task in bench]
    assert moved[0].x_train.device.type == "meta" and moved[2].y_test.device.type == "meta"
    assert moved[0].x_train.base is moved[2].x_train.base
    assert moved[1].x_test.base is moved[2].x_test.base
    assert moved[1].x_train.perm.device.type == "meta"
    assert bench[0].x_train.to("cpu").base is bench[0].x_train.base  # no copy for the same device
    assert moved[0].x_train[torch.arange(4)].shape == (4, 1024)


def test_task_data_validation_and_to():
    task = TaskData("t", torch.zeros(3, 2), torch.zeros(3, dtype=torch.long),
                    torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), num_classes=2, class_offset=4)
    assert task.to("cpu").x_train.shape == (3, 2) and task.input_shape == (2,)
    with pytest.raises(ValueError, match="labels"):
        TaskData("t", torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1), 2, 0)


def test_get_benchmark(small_mnist):
    assert isinstance(get_benchmark("split_mnist", arrays=small_mnist), SplitMNIST)
    bench = get_benchmark("Permuted-MNIST", num_tasks=2, arrays=small_mnist)
    assert isinstance(bench, PermutedMNIST) and bench.num_tasks == 2
    with pytest.raises(ValueError, match="permuted_mnist") as info:
        get_benchmark("cifar_nope")
    assert "split_mnist" in str(info.value)


def test_public_exports():
    for name in ["resolve_data_root", "read_idx", "load_mnist", "load_cifar10", "load_cifar100", "TaskData",
                 "SplitMNIST", "PermutedMNIST", "PermutedImages", "get_benchmark", "DatasetNotFoundError",
                 "DatasetIntegrityError"]:
        assert name in hd.__all__ and hasattr(hd, name)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(DatasetIntegrityError, ValueError)
    import subprocess
    import sys

    # in a fresh interpreter (other tests of this process import torchvision themselves)
    code = "import sys, hypercl, hypercl.data; sys.exit('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_permuted_images_tensor_like():
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    view = PermutedImages(base, torch.tensor([3, 2, 1, 0]))
    assert view.size() == (3, 4) and view.size(0) == 3 and view.dim() == 2 and view.ndim == 2
    assert torch.equal(view[torch.tensor([2, 0])], base[[2, 0]].flip(1))
    assert "PermutedImages" in repr(view)
    with pytest.raises(ValueError):
        PermutedImages(base, torch.arange(5))
