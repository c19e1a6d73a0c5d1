"""How a command that has started training ends on an expected failure: one line on stderr and an exit code."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator, Optional

from ..checkpoint import CheckpointError, FileWriteError, one_line
from ..data import DatasetIntegrityError, DatasetNotFoundError
from ..experiments.results_file import ResultsFileError
from ..experiments.runner import ResumeError
from ..learner import NonFiniteLossError

__all__ = ["failure_line", "Terminated", "sigterm_as_interrupt", "interrupt_name", "interrupt_code"]


def failure_line(e: BaseException, again: str) -> Optional[tuple[str, int]]:
    """The line to print and the exit code for an expected failure (``None``: not one of them, let it raise).

    ``again`` is the command that continues the work (``hypercl run ... --resume``, or the command itself).
    Exit codes: 2 bad data, checkpoint or results file; 3 a non-finite loss; 4 a file that could not be written.
    """
    if isinstance(e, (DatasetNotFoundError, DatasetIntegrityError)):
        return f"hypercl: data problem: {e}", 2
    if isinstance(e, NonFiniteLossError):
        return f"hypercl: training stopped: {e}", 3
    if isinstance(e, (CheckpointError, ResumeError)):
        return f"hypercl: checkpoint problem: {e}", 2
    if isinstance(e, ResultsFileError):
        return f"hypercl: {e}", 2
    if isinstance(e, FileWriteError):  # a full disk, a folder that became read-only: the previous files are intact
        return f"hypercl: {one_line(str(e))}; make room (or fix the folder), then continue with: {again}", 4
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so a command stops like on Ctrl-C (atomic writes clean up after
    themselves)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``); the old handler is put back
    after. Outside the main thread SIGTERM keeps its handler."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def interrupt_name(e: BaseException) -> str:
    """What stopped the command: ``SIGTERM`` or ``SIGINT (Ctrl-C)``."""
    return "SIGTERM" if isinstance(e, Terminated) else "SIGINT (Ctrl-C)"


def interrupt_code(e: BaseException) -> int:
    """The exit code of an interrupted command: 143 for SIGTERM, 130 for Ctrl-C (the shells' convention)."""
    return 143 if isinstance(e, Terminated) else 130
