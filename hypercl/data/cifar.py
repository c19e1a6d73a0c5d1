"""CIFAR-10 / CIFAR-100 in torchvision's on-disk layout (python pickle batches)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import download as _dl
from .archive import safe_extract
from .errors import DatasetIntegrityError, DatasetNotFoundError, missing_files_message
from .integrity import check_md5
from .paths import PathLike, resolve_data_root

__all__ = ["CIFARArrays", "CIFARSpec", "CIFAR10", "CIFAR100", "load_cifar10", "load_cifar100"]


@dataclass(frozen=True)
class CIFARSpec:
    """Names, URL and official md5s (the ones torchvision checks) of one CIFAR release."""

    name: str
    folder: str
    archive: str
    url: str
    archive_md5: str
    train: Tuple[Tuple[str, str], ...]
    test: Tuple[Tuple[str, str], ...]
    meta: Tuple[str, str]
    meta_key: str
    label_key: str
    num_classes: int


CIFAR10 = CIFARSpec(
    name="CIFAR-10",
    folder="cifar-10-batches-py",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    train=(
        ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        ("data_batch_4", "634d18415352ddfa80567beed471001a"),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    test=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
    meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    meta_key="label_names",
    label_key="labels",
    num_classes=10,
)

CIFAR100 = CIFARSpec(
    name="CIFAR-100",
    folder="cifar-100-python",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    train=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
    test=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
    meta_key="fine_label_names",
    label_key="fine_labels",
    num_classes=100,
)


@dataclass(frozen=True)
class CIFARArrays:
    """uint8 images (N, 3, 32, 32), int64 labels (N,) and the class names (if ``meta`` exists)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: Optional[Tuple[str, ...]]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals an array pickle needs (no code execution)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy._core", "numpy.core")
        if (canonical, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        if canonical.startswith("numpy.core") and hasattr(np, "_core"):
            module = canonical.replace("numpy.core", "numpy._core")  # numpy >= 2
        return super().find_class(module, name)


def _unpickle(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        ImportError,
    ) as err:
        raise DatasetIntegrityError(f"{path}: corrupt or truncated pickle ({err!r})") from err
    if not isinstance(obj, dict):
        raise DatasetIntegrityError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _load_batch(path: Path, spec: CIFARSpec) -> Tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    data, labels = entry.get("data"), entry.get(spec.label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetIntegrityError(f"{path}: 'data' must be a uint8 array (N, 3072), got {desc}")
    if labels is None:
        raise DatasetIntegrityError(f"{path}: no '{spec.label_key}' entry")
    try:
        lab = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DatasetIntegrityError(f"{path}: '{spec.label_key}' are not integers") from err
    if lab.shape != (data.shape[0],):
        raise DatasetIntegrityError(f"{path}: {lab.shape} labels for {data.shape[0]} images")
    if lab.size and (lab.min() < 0 or lab.max() >= spec.num_classes):
        raise DatasetIntegrityError(
            f"{path}: labels outside 0..{spec.num_classes - 1} (min {lab.min()}, max {lab.max()})"
        )
    return data, lab


def _ensure_extracted(spec: CIFARSpec, root: Path, download: bool, verify: bool) -> Path:
    folder = root / spec.folder
    required = [name for name, _ in spec.train + spec.test]
    missing = [name for name in required if not (folder / name).is_file()]
    if not missing:
        return folder
    archive = root / spec.archive
    if not archive.is_file():
        extra = f"(or put the archive {spec.archive} in {root}; it is extracted automatically)"
        if not download:
            raise DatasetNotFoundError(
                missing_files_message(spec.name, folder, missing, "download disabled", [spec.url], extra)
            )
        try:
            _dl.download_file([spec.url], archive, spec.archive_md5)
        except _dl.DownloadFailed as err:
            reason = f"download failed, offline? {err}"
            raise DatasetNotFoundError(
                missing_files_message(spec.name, folder, missing, reason, [spec.url], extra)
            ) from err
    elif verify:
        check_md5(archive, spec.archive_md5)
    safe_extract(archive, root, spec.folder)
    still = [name for name in required if not (folder / name).is_file()]
    if still:
        raise DatasetIntegrityError(f"{archive}: does not contain {', '.join(still)}")
    return folder


def _load_split(folder: Path, files: Sequence[Tuple[str, str]], spec: CIFARSpec, verify: bool):
    datas: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    for name, md5 in files:
        path = folder / name
        if verify:
            check_md5(path, md5)
        data, lab = _load_batch(path, spec)
        datas.append(data)
        labels.append(lab)
    images = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(np.concatenate(labels))


def _load_names(folder: Path, spec: CIFARSpec, verify: bool) -> Optional[Tuple[str, ...]]:
    path = folder / spec.meta[0]
    if not path.is_file():
        return None
    if verify:
        check_md5(path, spec.meta[1])
    names = _unpickle(path).get(spec.meta_key)
    if not isinstance(names, (list, tuple)):
        raise DatasetIntegrityError(f"{path}: no '{spec.meta_key}' list")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(
    spec: CIFARSpec, root: Optional[PathLike] = None, download: bool = True, verify: bool = True
) -> CIFARArrays:
    """Load one CIFAR release from ``<root>/<spec.folder>`` (see :func:`load_cifar10`)."""
    data_root = resolve_data_root(root)
    folder = _ensure_extracted(spec, data_root, download, verify)
    train_x, train_y = _load_split(folder, spec.train, spec, verify)
    test_x, test_y = _load_split(folder, spec.test, spec, verify)
    names = _load_names(folder, spec, verify)
    return CIFARArrays(train_x, train_y, test_x, test_y, names)


def load_cifar10(root: Optional[PathLike] = None, download: bool = True, verify: bool = True) -> CIFARArrays:
    """Load CIFAR-10 from ``<root>/cifar-10-batches-py`` (data_batch_1..5, test_batch).

    If the batches are missing, ``<root>/cifar-10-python.tar.gz`` is extracted (safely),
    downloading it first when ``download`` is True. ``verify`` checks every file's official
    md5; the pickles are always validated structurally and loaded without running code.
    Returns uint8 images (N, 3, 32, 32) and int64 labels.
    """
    return load_cifar(CIFAR10, root, download, verify)


def load_cifar100(root: Optional[PathLike] = None, download: bool = True, verify: bool = True) -> CIFARArrays:
    """Load CIFAR-100 (fine labels) from ``<root>/cifar-100-python`` (train, test, meta).

    Same behaviour as :func:`load_cifar10`, with ``cifar-100-python.tar.gz``.
    """
    return load_cifar(CIFAR100, root, download, verify)
