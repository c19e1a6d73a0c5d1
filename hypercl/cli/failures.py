"""How a command that has started training ends on an expected failure: one line on stderr and an exit code."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

from ..checkpoint import CheckpointError, FileWriteError, one_line
from ..data import DatasetIntegrityError, DatasetNotFoundError
from ..experiments.results_file import ResultsFileError
from ..experiments.runner import ResumeError
from ..learner import NonFiniteLossError

__all__ = [
    "failure_line",
    "Terminated",
    "sigterm_as_interrupt",
    "interrupt_name",
    "interrupt_code",
    "run_to_the_end",
]

_T = TypeVar("_T")


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


def run_to_the_end(
    name: str, command: str, written: str, work: Callable[[], _T], refused: tuple[type[Exception], ...] = ()
) -> tuple[Optional[_T], int]:
    """``(work(), 0)``, or ``(None, exit code)`` after one line on stderr: for Ctrl-C / SIGTERM (what ``written``
    says about the files, and ``command`` to run again), an expected failure (:func:`failure_line`) or one of the
    ``refused`` exceptions (``hypercl NAME: message``, exit 2). For commands that write only when done (they start
    over when run again)."""
    try:
        with sigterm_as_interrupt():
            return work(), 0
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM
        print(
            f"hypercl {name}: stopped by {interrupt_name(e)}; nothing written ({written}); run it again: {command}",
            file=sys.stderr,
        )
        return None, interrupt_code(e)
    except Exception as e:
        failure = failure_line(e, f"{command} (it starts over)")
        if failure is None and isinstance(e, refused):
            failure = f"hypercl {name}: {e}", 2
        if failure is None:
            raise
        print(failure[0], file=sys.stderr)
        return None, failure[1]
