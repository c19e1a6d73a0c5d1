"""MNIST in torchvision's on-disk layout: ``<root>/MNIST/raw/*-ubyte.gz``."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from . import download as _dl
from .errors import DatasetIntegrityError
from .idx import read_idx
from .integrity import check_md5
from .paths import PathLike, resolve_cache_root, resolve_data_root

__all__ = ["MNISTArrays", "load_mnist", "mnist_folder", "torchvision_mnist_root", "MNIST_MIRRORS", "MNIST_MD5"]

MNIST_MIRRORS: Tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# file -> md5. The .gz md5s are the official ones torchvision checks; the plain
# ones are the md5s of those files decompressed (accepted when only they exist).
MNIST_MD5: Dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass(frozen=True)
class MNISTArrays:
    """Raw MNIST: uint8 images (N, 28, 28) and int64 labels (N,) for train and test."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def mnist_folder(root: Optional[PathLike] = None) -> Path:
    """The folder holding the MNIST files: ``<data root>/MNIST/raw``."""
    return resolve_data_root(root) / "MNIST" / "raw"


def _locate(folder: Path, download: bool) -> Dict[str, Path]:
    found: Dict[str, Path] = {}
    missing: Dict[str, Optional[str]] = {}
    for stem in _STEMS:
        gz, plain = folder / f"{stem}.gz", folder / stem
        if gz.is_file():
            found[stem] = gz
        elif plain.is_file():
            found[stem] = plain
        else:
            missing[f"{stem}.gz"] = MNIST_MD5[f"{stem}.gz"]
    _dl.ensure_files("MNIST", folder, missing, lambda name: [m + name for m in MNIST_MIRRORS], download)
    for name in missing:
        found[name[: -len(".gz")]] = folder / name
    return found


def _check_pair(images: torch.Tensor, labels: torch.Tensor, img_path: Path, lbl_path: Path) -> None:
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DatasetIntegrityError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dtype != torch.uint8 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetIntegrityError(
            f"{lbl_path}: expected {images.shape[0]} uint8 labels, got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and int(labels.max()) > 9:
        raise DatasetIntegrityError(f"{lbl_path}: label {int(labels.max())} outside 0..9")


def load_mnist(root: Optional[PathLike] = None, download: bool = True, verify: bool = True) -> MNISTArrays:
    """Load MNIST from ``<root>/MNIST/raw`` (root resolved by :func:`resolve_data_root`).

    Missing files are downloaded (md5-checked, atomic) when ``download`` is True, else a
    :class:`DatasetNotFoundError` names them. With ``verify`` every file's md5 must equal
    the official one (:class:`DatasetIntegrityError` otherwise); ``verify=False`` only keeps
    the structural checks (for small hand-made files).
    """
    folder = mnist_folder(root)
    paths = _locate(folder, download)
    tensors = {}
    for stem, path in paths.items():
        if verify:
            check_md5(path, MNIST_MD5[path.name])
        tensors[stem] = read_idx(path)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = tensors[f"{prefix}-images-idx3-ubyte"]
        labels = tensors[f"{prefix}-labels-idx1-ubyte"]
        _check_pair(images, labels, paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"])
        out[f"{split}_images"] = images
        out[f"{split}_labels"] = labels.to(torch.int64)
    return MNISTArrays(**out)


def torchvision_mnist_root(root: Optional[PathLike] = None, download: bool = True) -> Path:
    """A root folder that ``torchvision.datasets.MNIST(root, download=False)`` and Avalanche's
    ``SplitMNIST(dataset_root=root)`` read without writing or downloading anything.

    torchvision reads the decompressed ``<root>/MNIST/raw/*-ubyte`` files and, asked to "download", decompresses the
    ``.gz`` files next to them, which fails on a read-only data folder. If the data root (resolved by
    :func:`resolve_data_root`) already holds the four decompressed files, it is returned unchanged. Otherwise its
    ``.gz`` files (fetched first when ``download`` is True) are md5-checked and decompressed, atomically, into
    ``<cache root>/torchvision`` (:func:`resolve_cache_root`), which is returned; a later call reuses the decompressed
    files after checking their md5s. The data root itself is never written to.
    """
    data_root = resolve_data_root(root)
    folder = data_root / "MNIST" / "raw"
    if all((folder / stem).is_file() for stem in _STEMS):
        return data_root
    paths = _locate(folder, download)
    out_root = resolve_cache_root() / "torchvision"
    out = out_root / "MNIST" / "raw"
    out.mkdir(parents=True, exist_ok=True)
    for stem in _STEMS:
        target = out / stem
        if target.is_file():
            try:
                check_md5(target, MNIST_MD5[stem])
                continue
            except DatasetIntegrityError:
                target.unlink()  # a damaged copy of ours: make it again from the source
        source = paths[stem]
        check_md5(source, MNIST_MD5[source.name])
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".tmp")
        try:
            with (
                os.fdopen(fd, "wb") as dst,
                gzip.open(source, "rb") if source.suffix == ".gz" else open(source, "rb") as src,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
            check_md5(Path(tmp), MNIST_MD5[stem])
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out_root
