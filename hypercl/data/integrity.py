"""md5 checks of dataset files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from .errors import DatasetIntegrityError

__all__ = ["md5sum", "check_md5"]

_CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    """Hex md5 digest of the file at ``path``."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, expected: Optional[str]) -> None:
    """Raise :class:`DatasetIntegrityError` unless ``path`` has md5 ``expected`` (None: skip)."""
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected.lower():
        raise DatasetIntegrityError(
            f"{path}: md5 mismatch (expected {expected}, actual {actual}). The file is corrupt, "
            "truncated or not the official release; delete it so it is downloaded again, or "
            "replace it with the official file."
        )
