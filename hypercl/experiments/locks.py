"""One trainer per (run identity, seed): an exclusive ``fcntl.flock`` on a lock file beside the checkpoint.

``hypercl run`` takes the lock of every checkpoint it is about to train before any data is loaded and holds it until
the process ends (the kernel releases it then, also after a kill), so the same command started twice at once trains
once: the second one is refused with one line. Different seeds, methods or settings have other checkpoint names and
so other locks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["RunLockedError", "run_lock_path", "hold_run_lock"]


class RunLockedError(RuntimeError):
    """Another process holds the lock of this (identity, seed): it is training it now."""


def run_lock_path(checkpoint: Path) -> Path:
    """The lock file of a checkpoint: ``.NAME.lock`` in the same folder."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f".{checkpoint.name}.lock"


def hold_run_lock(checkpoint: Path) -> int:
    """Take the exclusive lock of ``checkpoint`` without waiting; returns the open descriptor (closing it, or the
    process ending, releases the lock). :class:`RunLockedError` if another process holds it."""
    lock = run_lock_path(checkpoint)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(
            f"another hypercl process is training this run now ({Path(checkpoint).name}, same "
            "configuration and seed; lock held on "
            f"{lock}); wait for it to finish, then rerun "
            "with --resume to reuse its results"
        ) from None
    return fd
