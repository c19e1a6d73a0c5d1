"""Checkpoint files: plain data (tensors, numbers, strings, lists, dicts), written atomically, read with
``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import torch

__all__ = [
    "CheckpointError",
    "FileWriteError",
    "DiskFullError",
    "one_line",
    "atomic_save",
    "atomic_write_text",
    "atomic_save_figure",
    "load_checkpoint",
    "FORMAT",
    "VERSION",
    "payload_digest",
    "clean_stale_tmp",
]

FORMAT = "hypercl-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit what it is loaded into."""


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (newlines and runs of blanks collapsed), cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


class FileWriteError(OSError):
    """A results file, plot or checkpoint could not be written; the message is one line naming the file (the file
    that was there before is unchanged: writes are atomic)."""

    def __init__(self, path: Union[str, os.PathLike], message: str, errno_: Optional[int] = None) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.errno = errno_


class DiskFullError(FileWriteError):
    """No space left on the disk (or quota) for a file; ``needed`` and ``free`` in bytes (``free`` may be None)."""

    def __init__(self, path: Union[str, os.PathLike], needed: int, free: Optional[int]) -> None:
        self.needed, self.free = int(needed), free
        room = f", {_mb(free)} free there" if free is not None else ""
        super().__init__(
            path,
            f"no space left on the disk to write {path} (it needs {_mb(needed)}{room}); "
            "the previous version of the file is unchanged",
            errno.ENOSPC,
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _write_bytes(path: Path, f: Any, data: bytes) -> None:
    """The one place bytes reach a file: ``data`` into the open temporary file ``f`` of ``path`` (tests replace it
    to simulate a full disk)."""
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def _atomic(path: Union[str, os.PathLike], data: bytes) -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder, then ``os.replace`` it onto ``path``. A full disk or
    another OS error is a :class:`DiskFullError` / :class:`FileWriteError` naming ``path``; the old file is kept."""
    path = Path(path)
    tmp: Optional[str] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        free = _free_bytes(path.parent)
        if free is not None and free < len(data):
            raise DiskFullError(path, len(data), free)
        # the writer's pid is in the name, so clean_stale_tmp removes only the leftovers of dead processes
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            _write_bytes(path, f, data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared: honour the umask
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, FileWriteError) or not isinstance(e, OSError):
            raise
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise DiskFullError(path, len(data), _free_bytes(path.parent)) from e
        raise FileWriteError(path, f"could not write {path}: {e.strerror or e}", e.errno) from e
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
    :func:`load_checkpoint`. The file is serialised in memory first, so a full disk is a :class:`DiskFullError`
    that knows the size needed (not torch's zip-writer error)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj = {**obj, "digest": payload_digest(obj)}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return _atomic(path, buf.getvalue())


def atomic_write_text(text: str, path: Union[str, os.PathLike]) -> Path:
    """Write a text file (e.g. results JSON) atomically."""
    return _atomic(path, text.encode("utf-8"))


def atomic_save_figure(fig: Any, path: Union[str, os.PathLike], dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically, then close it (also when saving fails)."""
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return _atomic(path, buf.getvalue())
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
        raise CheckpointError(
            one_line(f"{path} is not a readable hypercl checkpoint ({type(e).__name__}: {e})", 300)
            + "; remove it (or restore a good copy) and train again"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a hypercl checkpoint (no '{FORMAT}' marker); give a file that "
            "ContinualLearner.save or hypercl run wrote"
        )
    if state.get("version") != VERSION:
        raise CheckpointError(
            one_line(
                f"{path} has checkpoint version {state.get('version')!r}, this hypercl reads "
                f"{VERSION}; load it with the hypercl that wrote it, or train again"
            )
        )
    digest = state.get("digest")
    if digest is None:
        raise CheckpointError(
            f"{path} has no payload digest (written by an older hypercl); it cannot be verified: "
            "remove it and train again"
        )
    if payload_digest(state) != digest:
        raise CheckpointError(
            f"{path} is corrupt: its content does not match the digest stored when it was saved; "
            "remove it (or restore a good copy) and train again"
        )
    state.pop("digest")
    return state
