"""Checkpoint files: plain data (tensors, numbers, strings, lists, dicts), written atomically, read with
``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["CheckpointError", "atomic_save", "atomic_write_text", "atomic_save_figure", "load_checkpoint", "FORMAT", "VERSION"]

FORMAT = "hypercl-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit what it is loaded into."""


def _atomic(path: Union[str, os.PathLike], write: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: Union[str, os.PathLike]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` onto ``path``."""
    return _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: Union[str, os.PathLike]) -> Path:
    """Write a text file (e.g. results JSON) atomically."""
    return _atomic(path, lambda f: f.write(text.encode("utf-8")))


def atomic_save_figure(fig: Any, path: Union[str, os.PathLike], dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it (also when saving fails)."""
    import matplotlib.pyplot as plt

    try:
        return _atomic(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def load_checkpoint(path: Union[str, os.PathLike], map_location: Any = None) -> dict:
    """Read and validate a checkpoint (weights only: no code is executed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise CheckpointError(f"{path} is not a readable hypercl checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hypercl checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}, this hypercl reads {VERSION}")
    return state
