"""Checks shared by the commands, run before any data is loaded: a bad value becomes one line for the user."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

__all__ = ["Refusal", "check_out_folder", "check_data_root"]


class Refusal(Exception):
    """A bad argument found before any data is loaded: one line for the user."""


def check_out_folder(
    out: Path, sub: Optional[str] = "checkpoints", holds: str = "the results JSON, PNGs and checkpoints"
) -> None:
    """``--out``: a folder (made if missing, with ``sub`` inside) this process can write; ``holds`` says what the
    command writes there."""
    if out.exists() and not out.is_dir():
        raise Refusal(f"--out {out} is a file; give a folder (it will hold {holds})")
    try:
        folder = out / sub if sub else out
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as e:
        raise Refusal(f"--out {out} is not writable ({e.strerror or e}); choose a folder you can write") from None


def check_data_root(value: Optional[str]) -> None:
    """``--data-root``: absent, or a readable folder (it may not exist yet: the data is downloaded there)."""
    if value is None:
        return
    if not value.strip():
        raise Refusal("--data-root is empty; give the folder holding MNIST/raw (or CIFAR), or leave it out")
    root = Path(value)
    if root.exists() and not root.is_dir():
        raise Refusal(f"--data-root {root} is a file; give the folder holding MNIST/raw (or CIFAR)")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise Refusal(f"--data-root {root} is not readable; fix its permissions or choose another folder")
