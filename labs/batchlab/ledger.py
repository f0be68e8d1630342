"""The ledger: an append-only JSON-lines record of every side effect of a run.

It is the ground truth for every metric (docs/design.md, Metrics). Each event is one
short line written with a single ``os.write`` on a file opened with ``O_APPEND``:
a SIGKILL can land before or after the line, never inside it, and the parent
process can append its own events (a kill it sent) to the same file safely.
The student's code never sees the ledger: the harness's service and sink write
to it, so nothing a student writes can forge it.

Every line has the envelope ``ev`` (the kind), ``t`` (wall-clock time), ``pass`` and ``pid``;
the kinds and their fields (:data:`FIELDS`, checked against a real run by
``tests/batchlab/test_ledger_events.py``; optional fields in brackets):

==================  =================================================================================
``pass_start``      a worker started: ``t0``, ``batch_id``, ``crash``, ``at`` [``boot``, ``impl``,
                    ``parent_link``, ``lock``; a fleet's shard pass (:mod:`batchlab.shardpass`): ``shard``,
                    ``owner``, ``token``]
``call_start``      a service call began: ``doc_id``, ``ident``, ``chunk``, ``attempt``, ``call``,
                    ``inflight``, ``doc_inflight``
``call_ok``         it answered: ``doc_id``, ``ident``, ``chunk``, ``attempt``, ``call``, ``latency``
``call_fail``       it failed: ``doc_id``, ``ident``, ``chunk``, ``attempt``, ``call``, ``error``,
                    ``permanent`` (the error is "unreachable" in an outage, "cancelled" when the
                    processor cancelled the call: its deadline)
``sink_put``        an output was committed: ``doc_id``, ``ident``, ``key``, ``mode``, ``n`` (the
                    pass's commit count), ``writes`` (executions of that key so far, upgrades not
                    counted), ``upgrade`` (a full output replaced a degraded one: a backfill) [``unbacked``:
                    the chunks of a full output the service never answered in this run (:mod:`batchlab.harness`)]
``state``           the processor reported a state through its progress callback: ``doc_id``, ``state``,
                    ``error``, ``attempts``
``crash``           a planned crash fired: ``kind``, ``at``, ``doc_id``, ``ident``
``kill``            a parent SIGKILLed the worker: ``kind``, ``by``, ``delay`` [``n``]
``timeout``         the parent killed a pass that ran too long: ``after_s``
``stop``            the parent asked the worker to stop: ``signal``, ``by``
``stopped``         the worker stopped on request: ``signal``, ``left_in_flight``, ``in_flight``,
                    ``commits``, ``calls``, ``grace_s`` [a shard pass whose put the fence refused, signal
                    "stale_lease": ``shard``, ``owner``, ``token``, ``refused_key``]
``pass_end``        the processor returned: ``report``, ``calls``, ``commits``
``student_error``   the processor (or its import) raised: ``phase``, ``error`` [``traceback``]
``input_error``     the input was refused before any work: ``error``
``resource``        a resource sample of the worker (:mod:`batchlab.resources`; no metric reads it):
                    ``by`` [``worker_pid``, ``cpu_percent``, ``rss_bytes``, ``open_files``,
                    ``disk_bytes``]
``outage``          the service's calls met it down, or up again (:mod:`batchlab.faults`): ``state``
                    (down, up), ``source`` (plan, switch, none)
==================  =================================================================================
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring as _escape
from pathlib import Path
from typing import Any

# Reading the ledger lives in :mod:`batchlab.ledger_read`; its names stay importable from here.
from .ledger_read import LedgerTail as LedgerTail
from .ledger_read import iter_events as iter_events
from .ledger_read import parse_event as parse_event
from .ledger_read import read_events as read_events


class Ev(StrEnum):
    """The kinds of ledger event (field ``ev``); each is its plain string, as the ledger file holds it."""

    PASS_START = "pass_start"
    CALL_START = "call_start"
    CALL_OK = "call_ok"
    CALL_FAIL = "call_fail"
    SINK_PUT = "sink_put"
    STATE = "state"
    CRASH = "crash"
    KILL = "kill"
    TIMEOUT = "timeout"
    STOP = "stop"
    STOPPED = "stopped"
    PASS_END = "pass_end"
    STUDENT_ERROR = "student_error"
    INPUT_ERROR = "input_error"
    RESOURCE = "resource"
    OUTAGE = "outage"


@dataclass(frozen=True)
class Fields:
    """The fields of one event kind beyond the envelope: those always written, and those sometimes written."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    def problems(self, event: Mapping[str, Any]) -> list[str]:
        """What ``event`` lacks or has beyond this table (empty when it matches)."""
        keys = set(event) - set(ENVELOPE)
        return ([f"missing {name}" for name in sorted(self.required - keys)]
                + [f"unlisted {name}" for name in sorted(keys - self.required - self.optional)])


def _fields(required: str, optional: str = "") -> Fields:
    return Fields(frozenset(required.split()), frozenset(optional.split()))


#: Every line carries these.
ENVELOPE = ("ev", "t", "pass", "pid")
_CALL = "doc_id ident chunk attempt call"
#: The fields of every event kind: the table of the module docstring, as data.
FIELDS: dict[Ev, Fields] = {
    Ev.PASS_START: _fields("t0 batch_id crash at", "boot impl parent_link lock shard owner token"),
    Ev.CALL_START: _fields(f"{_CALL} inflight doc_inflight"),
    Ev.CALL_OK: _fields(f"{_CALL} latency"),
    Ev.CALL_FAIL: _fields(f"{_CALL} error permanent"),
    Ev.SINK_PUT: _fields("doc_id ident key mode n writes upgrade", "unbacked"),
    Ev.STATE: _fields("doc_id state error attempts"),
    Ev.CRASH: _fields("kind at doc_id ident"),
    Ev.KILL: _fields("kind by delay", "n"),
    Ev.TIMEOUT: _fields("after_s"),
    Ev.STOP: _fields("signal by"),
    Ev.STOPPED: _fields("signal left_in_flight in_flight commits calls grace_s", "shard owner token refused_key"),
    Ev.PASS_END: _fields("report calls commits"),
    Ev.STUDENT_ERROR: _fields("phase error", "traceback"),
    Ev.INPUT_ERROR: _fields("error"),
    Ev.RESOURCE: _fields("by", "worker_pid cpu_percent rss_bytes open_files disk_bytes"),
    Ev.OUTAGE: _fields("state source"),
}

#: The event kind of a resource sample of a running worker (:mod:`batchlab.resources`); no metric reads it.
RESOURCE_EVENT = Ev.RESOURCE
#: A worker's events after which its pass is over (nothing more is sampled, its pid is stale).
PASS_OVER = frozenset({Ev.PASS_END, Ev.STOPPED, Ev.STUDENT_ERROR, Ev.INPUT_ERROR, Ev.CRASH, Ev.KILL, Ev.TIMEOUT})
#: A pass was interrupted: a planned crash fired, or a parent SIGKILLed the worker.
CRASH_EVENTS = frozenset({Ev.CRASH, Ev.KILL})
#: The processor's own end of a pass: it returned, it raised, or its input was refused.
END_EVENTS = frozenset({Ev.PASS_END, Ev.STUDENT_ERROR, Ev.INPUT_ERROR})


class PassEnd(StrEnum):
    """How a pass ended: one vocabulary for the runner, the metrics, the grader and the report.

    From the ledger (:func:`batchlab.ledger_views.pass_end`): ``timeout`` the parent's ``timeout``
    event (it wins over the kill that follows it); ``killed`` a ``crash`` or ``kill`` event;
    ``stopped`` the worker's ``stopped`` event; ``ok`` ``pass_end`` (the processor returned);
    ``import_error`` a ``student_error`` of the import phase; ``student_error`` / ``input_error``
    the event of that name (it raised; the input was refused); ``died`` none of these (the
    process vanished). From the exit of the process (:attr:`batchlab.runner.PassResult.end`): the
    same names, by return code. The values are the strings the reports and results files have
    always shown; :attr:`words` is how ``batchlab run``/``demo`` print them.
    """

    OK = "ok"
    KILLED = "killed"
    TIMEOUT = "timeout"
    STOPPED = "stopped"
    DIED = "died"
    STUDENT_ERROR = "student_error"
    IMPORT_ERROR = "import_error"
    INPUT_ERROR = "input_error"

    @property
    def words(self) -> str:
        """The outcome as a person reads it in a pass line: ``raised``, ``bad input``, ``import error`` ..."""
        return _PASS_END_WORDS.get(self, self.value)


_PASS_END_WORDS = {PassEnd.STUDENT_ERROR: "raised", PassEnd.INPUT_ERROR: "bad input",
                   PassEnd.IMPORT_ERROR: "import error"}


MAX_FIELD_CHARS = 600
#: One encoder for every line: ``json.dumps`` with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        return value[:MAX_FIELD_CHARS] + "..."
    return value


def _plain_str(value: str) -> str:
    return _escape(value if len(value) <= MAX_FIELD_CHARS else value[:MAX_FIELD_CHARS] + "...")


def _finite_float(value: float) -> str:
    return float.__repr__(value) if value - value == 0.0 else _ENCODER.encode(value)  # NaN, inf: as json spells them


#: The JSON text of a value of these exact types, as :data:`_ENCODER` writes it (a top-level string shortened);
#: anything else (a dict, a list, a ``str`` subclass, a big float) goes through the encoder itself.
_SCALAR_JSON: dict[type, Callable[[Any], str]] = {
    str: _plain_str, int: int.__repr__, float: _finite_float,
    bool: lambda v: "true" if v else "false", type(None): lambda _: "null",
}
#: ``"kind"`` of the event kinds met so far.
_EV_JSON: dict[str, str] = {}
#: ``,"name":`` of every field name met so far (a name of the envelope is never cached: it overrides the envelope).
_KEY_JSON: dict[str, str] = {}


def _json(value: Any) -> str:
    fmt = _SCALAR_JSON.get(type(value))
    return fmt(value) if fmt is not None else _ENCODER.encode(value)


def encode_event(ev: str, t: float, pass_no: int, pid: int, fields: Mapping[str, Any]) -> bytes:
    """One ledger line (with its newline): the bytes ``_ENCODER`` wrote for the same event, built about twice as fast.

    A zero-latency pass writes five lines a document; the encoder's generic path (a dict built, a C
    encoder made per call, the parts joined) was a tenth of the worker's CPU. Here the envelope and each field
    name's JSON is made once, and a scalar value (the events' fields but ``report``) is formatted directly.
    """
    if not _KEY_JSON.keys() >= fields.keys():
        if len(_KEY_JSON) > 256 or any(name in ENVELOPE for name in fields):  # overriding the envelope, or many names
            record = {"ev": ev, "t": t, "pass": pass_no, "pid": pid}
            record.update((name, _short(v) if type(v) is str else v) for name, v in fields.items())
            return (_ENCODER.encode(record) + "\n").encode("utf-8")
        _KEY_JSON.update((name, "," + _escape(name) + ":") for name in fields)
    scalar, keys = _SCALAR_JSON, _KEY_JSON
    head = _EV_JSON.get(ev)
    if head is None:
        head = _ENCODER.encode(ev)
        if len(_EV_JSON) < 64:
            _EV_JSON[ev] = head
    parts = ['{"ev":', head, ',"t":', _json(t), ',"pass":', _json(pass_no), ',"pid":', _json(pid)]
    for name, value in fields.items():
        fmt = scalar.get(type(value))
        parts += (keys[name], fmt(value) if fmt is not None else _ENCODER.encode(value))
    parts.append("}\n")
    return "".join(parts).encode("utf-8")


class Ledger:
    """Appends events for one pass of one worker process."""

    def __init__(self, path: str | Path, *, pass_no: int, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.pass_no = pass_no
        self._clock = clock
        self._pid = os.getpid()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(self, ev: str, **fields: Any) -> None:
        os.write(self._fd, encode_event(ev, self._clock(), self.pass_no, self._pid, fields))

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
