"""How one pass's worker process ended: its exit, in the ledger's vocabulary, and its output for feedback.

Apart from :mod:`batchlab.runner` because every front-end reads a :class:`PassResult` (the CLI's pass
lines, the grader's feedback, the dashboard, the service's batch states) while only the runner makes one.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from .faults import CrashPlan
from .ledger import PassEnd
from .worker import WorkerExit

__all__ = ["PassResult", "read_capped"]


@dataclass
class PassResult:
    """How one child process ended."""

    pass_no: int
    returncode: int | None
    duration_s: float
    crash: CrashPlan
    killed_by_parent: bool = False
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    stopped_by: str | None = None  #: the signal name when the pass was asked to stop (Ctrl-C, SIGTERM)
    #: With the boundary: what wrote the run's records besides the harness side (empty: nothing did).
    foreign: list[str] = field(default_factory=list)
    #: With the boundary: events the worker sent that only the harness side may write (refused).
    refused_events: int = 0

    @property
    def sigkilled(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def end(self) -> PassEnd:
        """How the pass ended, by its process's exit, in the ledger's vocabulary (:class:`batchlab.ledger.PassEnd`)."""
        if self.timed_out:
            return PassEnd.TIMEOUT
        if self.sigkilled:
            return PassEnd.KILLED
        return _END_BY_EXIT.get(self.returncode, PassEnd.DIED) if self.returncode is not None else PassEnd.DIED

    @property
    def outcome(self) -> str:
        """:attr:`end` as a pass line prints it (``ok``, ``killed``, ``raised``, ``bad input`` ...).

        A process that died otherwise says how: ``signal 11``, ``exit 7``.
        """
        end = self.end
        if end == PassEnd.DIED and self.returncode is not None:
            return f"signal {-self.returncode}" if self.returncode < 0 else f"exit {self.returncode}"
        return end.words


#: The worker's exit codes and the pass ends they mean (a SIGKILL or a timeout is decided before).
_END_BY_EXIT: dict[int, PassEnd] = {
    WorkerExit.OK: PassEnd.OK, WorkerExit.STOPPED: PassEnd.STOPPED, WorkerExit.INPUT: PassEnd.INPUT_ERROR,
    WorkerExit.IMPORT: PassEnd.IMPORT_ERROR, WorkerExit.RAISED: PassEnd.STUDENT_ERROR,
}


def read_capped(path: Path, cap: int) -> str:
    """The file's text, cut at ``cap`` bytes with a line saying how many more there were (a flood costs nothing)."""
    if not path.exists():
        return ""
    size = path.stat().st_size
    with path.open("rb") as fh:
        data = fh.read(cap)
    text = data.decode("utf-8", errors="replace")
    if size > cap:
        text += f"\n... [{size - cap} more bytes of output cut]"
    return text
