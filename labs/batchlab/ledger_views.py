"""The ledger read pass by pass: which events a reader can trust, how each pass ended, what it did.

One fold for everyone who reads a run back: :mod:`batchlab.metrics` (the lesson's figures),
``grader/analysis.py`` (the report against the ledger), the report and chaos. Before it, the
metrics and the grader each grouped events by pass and named a pass's end in their own words,
and the two had begun to disagree (a timed-out pass was ``timeout`` for one, ``killed`` or
``died`` for the other).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .ledger import CRASH_EVENTS, END_EVENTS, Ev, PassEnd, parse_event

Event = Mapping[str, Any]

#: Ledger events that name a document and must carry its ``ident``.
IDENT_EVENTS = frozenset({Ev.CALL_START, Ev.CALL_OK, Ev.CALL_FAIL, Ev.SINK_PUT})


def usable_event(ev: Event) -> dict[str, Any] | None:
    """The event as the metrics read it (``t`` a finite float, ``pass`` an int), or None when it cannot be read.

    The worker writes only readable lines: a finite time ``t``, an integer ``pass``, an ``ident``
    where one is due; anything else (a hand-edited or foreign ledger) is skipped, as a torn line
    is, rather than crash every command that reads it. Never changes ``ev``; returns it itself when
    nothing needs converting.
    """
    if type(ev) is dict:  # the common case, every line the worker writes, checked without converting anything
        t0, kind = ev.get("t"), ev.get("ev")
        if (type(t0) is float and t0 - t0 == 0.0 and type(ev.get("pass")) is int and type(kind) is str
                and (kind not in IDENT_EVENTS or type(ev.get("ident")) is str)
                and not (kind == Ev.PASS_START and "t0" in ev)):
            return ev
    try:
        t = float(ev["t"])
        pass_no = int(ev.get("pass", 0))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(t) or not isinstance(ev.get("ev"), str):
        return None
    if ev["ev"] in IDENT_EVENTS and not isinstance(ev.get("ident"), str):
        return None
    if ev["ev"] == Ev.PASS_START and "t0" in ev:
        try:
            if not math.isfinite(float(ev["t0"])):
                return None
        except (TypeError, ValueError, OverflowError):
            return None
    if isinstance(ev, dict) and type(ev["t"]) is float and type(ev.get("pass")) is int:
        return ev  # already as the metrics read it (every line the worker writes): no copy
    return {**ev, "t": t, "pass": pass_no}


def usable_events(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Every event :func:`usable_event` can read, in ledger order (a list: for readers of a small run)."""
    return [u for u in map(usable_event, events) if u is not None]


def events_by_pass(events: Sequence[Event]) -> dict[int, list[Event]]:
    """The events of each pass (numbered from 1), in ledger order; events of no pass are left out."""
    by_pass: dict[int, list[Event]] = defaultdict(list)
    for ev in events:
        pass_no = int(ev.get("pass", 0))
        if pass_no > 0:
            by_pass[pass_no].append(ev)
    return dict(sorted(by_pass.items()))


def first_event(events: Sequence[Event], kinds: frozenset[str]) -> Event | None:
    return next((e for e in events if e.get("ev") in kinds), None)


@dataclass
class PassFirsts:
    """The first event of each kind that says how a pass began and ended, seen one event at a time.

    :func:`pass_end` on a list and the streaming fold (:mod:`batchlab.metric_fold`) both read a
    pass's end from it, so the two cannot name the same pass differently.
    """

    start: Event | None = None
    timeout: Event | None = None
    crash: Event | None = None
    stopped: Event | None = None
    end: Event | None = None

    def see(self, ev: Event) -> None:
        kind = ev.get("ev")
        if kind == Ev.PASS_START:
            self.start = self.start or ev
        elif kind == Ev.TIMEOUT:
            self.timeout = self.timeout or ev
        elif kind in CRASH_EVENTS:
            self.crash = self.crash or ev
        elif kind == Ev.STOPPED:
            self.stopped = self.stopped or ev
        elif kind in END_EVENTS:
            self.end = self.end or ev

    @classmethod
    def of(cls, events: Iterable[Event]) -> PassFirsts:
        firsts = cls()
        for ev in events:
            firsts.see(ev)
        return firsts

    def exit(self) -> PassEnd:
        """How the pass ended (see :func:`pass_end`)."""
        if self.timeout is not None:
            return PassEnd.TIMEOUT
        if self.crash is not None:
            return PassEnd.KILLED
        if self.stopped is not None:
            return PassEnd.STOPPED
        end = self.end
        if end is None:
            return PassEnd.DIED
        if end["ev"] == Ev.STUDENT_ERROR and end.get("phase") == "import":
            return PassEnd.IMPORT_ERROR
        return PassEnd.OK if end["ev"] == Ev.PASS_END else PassEnd(end["ev"])


def pass_end(events: Iterable[Event]) -> PassEnd:
    """How one pass ended, from its own events (see :class:`batchlab.ledger.PassEnd`).

    The parent's ``timeout`` wins (it also killed the worker); then a ``crash`` or ``kill``; then
    a ``stopped`` worker; then the processor's own end (``pass_end``, ``student_error`` of the
    import or of the run, ``input_error``); else ``died``.
    """
    return PassFirsts.of(events).exit()


@dataclass
class PassMetrics:
    """What the ledger says about one worker process."""

    pass_no: int
    started: float
    ended: float | None
    exit: PassEnd
    committed: int = 0
    calls: int = 0
    retries: int = 0
    call_failures: int = 0
    #: commits of this pass that replaced a degraded output with a full one (a backfill): not duplicates
    upgraded: int = 0
    #: valid identities committed before this pass that it did not execute again (found finished: checkpoint hits)
    hits: int = 0
    #: valid identities of the batch (the lookups a resumed pass makes, one per identity)
    lookups: int = 0
    resume_time_s: float | None = None
    #: one latency per commit of the pass (first dispatch to commit); p50/p95 exact, from all of them
    latency_count: int = 0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    #: the latencies themselves, in commit order; above ``fold_store.SPILL_KEYS`` an evenly spaced sample (plots)
    latencies_s: list[float] = field(default_factory=list)
    crash: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    student_error: str | None = None

    @property
    def wall_s(self) -> float:
        return max((self.ended or self.started) - self.started, 0.0)

    @property
    def throughput_docs_per_min(self) -> float:
        return 60.0 * self.committed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def redone(self) -> int:
        """Valid identities this pass had to run (or run again): not found finished when it began."""
        return self.lookups - self.hits

    @property
    def checkpoint_hit_rate(self) -> float | None:
        """hits / lookups for a resumed pass (docs/design.md, Metrics); None for a first pass or an empty batch."""
        return self.hits / self.lookups if self.pass_no > 1 and self.lookups else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("latencies_s", "latency_count", "latency_p50_s", "latency_p95_s"):
            data.pop(name)
        data.update(wall_s=self.wall_s, throughput_docs_per_min=self.throughput_docs_per_min,
                    redone=self.redone, checkpoint_hit_rate=self.checkpoint_hit_rate,
                    latency_p50_s=self.latency_p50_s, latency_p95_s=self.latency_p95_s)
        return data


def answered_chunks(events: Iterable[Event]) -> set[tuple[str, int]]:
    """``(ident, chunk)`` of every chunk the service answered (``call_ok``): what a full output must rest on.

    The harness side refuses nothing on it but marks a full commit of unanswered chunks ``unbacked``
    (:mod:`batchlab.harness`); the grader's step runs refuse such a pass (``grader/minirun.py``).
    """
    return {(str(e.get("ident")), e["chunk"]) for e in events
            if e.get("ev") == Ev.CALL_OK and isinstance(e.get("chunk"), int)}


def is_upgrade(put: Event) -> bool:
    """A put that replaced a committed degraded output with a full one (a backfill): new work, never a duplicate."""
    return put.get("upgrade") is True


def puts_by_ident(puts: Sequence[Event]) -> dict[str, list[int]]:
    """The passes in which each identity was executed, one entry per execution (the sink's ``puts`` table).

    Upgrades (:func:`is_upgrade`) are left out: the duplicate rate counts executions that redid work.
    """
    passes: dict[str, list[int]] = defaultdict(list)
    for put in puts:
        if not is_upgrade(put):
            passes[put["ident"]].append(int(put["pass"]))
    return dict(passes)



#: :func:`last_pass_no` reads the ledger backwards this many bytes at a time.
TAIL_BLOCK = 1 << 16


def _pass_of(raw: bytes) -> int:
    ev = parse_event(raw)
    if ev is None:
        return 0
    try:
        return int(ev.get("pass") or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def last_pass_no(path: str | Path, *, block: int = TAIL_BLOCK) -> int:
    """The highest pass number in a ledger (0 for none), read from its end: a finished million-document run's
    ledger is about a GB, and ``batchlab run`` numbers its pass before it starts.

    Passes are appended in order (one run of a run directory at a time, under its lock), so the last
    complete line that names a pass names the highest; lines with no pass (0) are stepped over, and what
    follows the last newline (a line still being written) is skipped, as :func:`batchlab.ledger.iter_events`
    skips it.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return 0
    with p.open("rb") as fh:
        end = _after_last_newline(fh, size, block)
        carry = b""  # the head of the block read last: the end of a line that began before it
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            pieces = (fh.read(end - start) + carry).split(b"\n")
            carry, complete = (pieces[0], pieces[1:]) if start > 0 else (b"", pieces)
            best = max((_pass_of(raw) for raw in complete if raw.strip()), default=0)
            if best > 0:
                return best
            end = start
    return 0


def _after_last_newline(fh: IO[bytes], size: int, block: int) -> int:
    """Where the ledger's complete lines end (just after its last newline; 0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        fh.seek(start)
        data = fh.read(end - start)
        at = data.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0
