"""Exceptions raised by :mod:`hypercl.data`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["DatasetNotFoundError", "DatasetIntegrityError", "missing_files_message"]


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing and could not be downloaded (offline or download disabled)."""


class DatasetIntegrityError(ValueError):
    """A dataset file exists but is corrupt: wrong md5, truncated or malformed content."""


def missing_files_message(
    dataset: str,
    folder: Path,
    missing: Iterable[str],
    reason: str,
    urls: Sequence[str] = (),
    extra: str = "",
) -> str:
    """Build the user-facing message of a :class:`DatasetNotFoundError`."""
    names = "\n".join(f"  - {name}" for name in missing)
    lines = [
        f"{dataset} not found ({reason}). Missing file(s):",
        names,
        f"Put them in this exact folder: {folder}",
    ]
    if extra:
        lines.append(extra)
    if urls:
        lines.append("They can be downloaded from: " + ", ".join(urls))
    lines.append(
        "Or point hypercl at another data root with --data-root or the HYPERCL_DATA "
        "environment variable (the folder that contains the dataset's folder)."
    )
    return "\n".join(lines)
