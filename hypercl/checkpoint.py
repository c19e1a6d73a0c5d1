"""Checkpoint files: plain data (tensors, numbers, strings, lists, dicts), written atomically, read with
``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

__all__ = ["CheckpointError", "atomic_save", "atomic_write_text", "atomic_save_figure", "load_checkpoint", "FORMAT",
           "VERSION",
           "payload_digest", "clean_stale_tmp"]

FORMAT = "hypercl-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit what it is loaded into."""


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _atomic(path: Union[str, os.PathLike], write: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid is in the name, so clean_stale_tmp removes only the leftovers of dead processes
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared: honour the umask
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def clean_stale_tmp(folder: Union[str, os.PathLike]) -> list[Path]:
    """Remove the ``.NAME.PID.XXXX.tmp`` files in ``folder`` whose writing process is gone (a kill mid-write)."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        parts = p.name.split(".")
        pid = next((int(x) for x in reversed(parts[:-2]) if x.isdigit()), None)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running: its write is in flight
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"D%d" % len(obj))
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj) if isinstance(obj, list) else b"U%d" % len(obj))
        for x in obj:
            _feed(h, x)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def payload_digest(state: dict) -> str:
    """SHA-256 over a checkpoint's content (every tensor's dtype, shape and bytes; every other value's repr),
    without its ``digest`` entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def atomic_save(obj: Any, path: Union[str, os.PathLike]) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` onto ``path``. A hypercl checkpoint
    (a dict with the format marker) gets the :func:`payload_digest` of its content, verified by
    :func:`load_checkpoint`."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj = {**obj, "digest": payload_digest(obj)}
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
    digest = state.get("digest")
    if digest is None:
        raise CheckpointError(f"{path} has no payload digest (written by an older hypercl); it cannot be verified: "
                              "remove it and train again")
    if payload_digest(state) != digest:
        raise CheckpointError(f"{path} is corrupt: its content does not match the digest stored when it was saved; "
                              "remove it (or restore a good copy) and train again")
    state.pop("digest")
    return state
