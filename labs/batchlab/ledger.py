"""The ledger: an append-only JSON-lines record of every side effect of a run.

It is the ground truth for every metric (docs/design.md, Metrics). Each event is one
short line written with a single ``os.write`` on a file opened with ``O_APPEND``:
a SIGKILL can land before or after the line, never inside it, and the parent
process can append its own events (a kill it sent) to the same file safely.
The student's code never sees the ledger: the harness's service and sink write
to it, so nothing a student writes can forge it.

Event kinds (field ``ev``):

``pass_start``  a worker process started (``pass``, ``pid``, ``batch_id``, ``documents``)
``call_start`` / ``call_ok`` / ``call_fail``  one service call (``doc_id``, ``key``, ``chunk``, ``attempt``, ``error``)
``sink_put``    a committed output (``doc_id``, ``key``, ``mode``)
``state``       a state change reported by the processor through ``progress`` (``doc_id``, ``state``, ``error``)
``crash``       a planned crash fired (``kind``, ``at``); ``kill`` the parent sent SIGKILL
``pass_end``    the processor returned (``report``); ``student_error`` it raised (``error``)
``resource``    a resource sample of the worker by ``batchlab serve`` (``cpu_percent``, ``rss_bytes``, ``open_files``,
                ``disk_bytes``); no metric reads it
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

#: The event kind of a resource sample of a running worker (:mod:`batchlab.resources`); no metric reads it.
RESOURCE_EVENT = "resource"
#: A worker's events after which its pass is over (nothing more is sampled, its pid is stale).
PASS_OVER = frozenset({"pass_end", "stopped", "student_error", "input_error", "crash", "kill", "timeout"})


class PassEnd(StrEnum):
    """How a pass ended, as its ledger events tell it: one vocabulary for the metrics and the grader.

    ``killed``: a ``crash`` or ``kill`` event; ``ok``: ``pass_end`` (the processor returned);
    ``student_error`` / ``input_error``: the event of that name (it raised; the input was refused);
    ``timeout``: the parent's ``timeout`` event (only the grader's analysis reads it; the metrics
    name such a pass by its other events); ``died``: none of these (the process vanished).
    The values are the strings the reports and results files have always shown.
    """

    OK = "ok"
    KILLED = "killed"
    TIMEOUT = "timeout"
    DIED = "died"
    STUDENT_ERROR = "student_error"
    INPUT_ERROR = "input_error"

MAX_FIELD_CHARS = 600
#: One encoder for every line: ``json.dumps`` with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "..."
    return value


class Ledger:
    """Appends events for one pass of one worker process."""

    def __init__(self, path: str | Path, *, pass_no: int, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.pass_no = pass_no
        self._clock = clock
        self._pid = os.getpid()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, ev: str, **fields: Any) -> None:
        record = {"ev": ev, "t": self._clock(), "pass": self.pass_no, "pid": self._pid}
        for name, value in fields.items():
            record[name] = _short(value) if type(value) is str else value
        line = _ENCODER.encode(record) + "\n"
        os.write(self._fd, line.encode("utf-8"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def append_event(path: str | Path, ev: str, *, pass_no: int, **fields: Any) -> None:
    """Append one event from outside a worker (the runner recording a kill it sent)."""
    with Ledger(path, pass_no=pass_no) as ledger:
        ledger.emit(ev, **fields)


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the events of a ledger in order; a torn or foreign line is skipped, never fatal."""
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and "ev" in event:
                yield event


def read_events(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_events(path))
