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
from typing import Any

from .contract import percentile
from .ledger import CRASH_EVENTS, END_EVENTS, Ev, PassEnd

Event = Mapping[str, Any]

#: Ledger events that name a document and must carry its ``ident``.
IDENT_EVENTS = frozenset({Ev.CALL_START, Ev.CALL_OK, Ev.CALL_FAIL, Ev.SINK_PUT})


def usable_events(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The events the metrics can read: a finite time ``t``, an integer ``pass``, an ``ident`` where one is due.

    The worker writes only such lines; anything else (a hand-edited or foreign
    ledger) is skipped, as a torn line is, rather than crash every command that reads it.
    """
    kept = []
    for ev in events:
        try:
            t = float(ev["t"])
            pass_no = int(ev.get("pass", 0))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if not math.isfinite(t) or not isinstance(ev.get("ev"), str):
            continue
        if ev["ev"] in IDENT_EVENTS and not isinstance(ev.get("ident"), str):
            continue
        if ev["ev"] == Ev.PASS_START and "t0" in ev:
            try:
                if not math.isfinite(float(ev["t0"])):
                    continue
            except (TypeError, ValueError, OverflowError):
                continue
        kept.append({**ev, "t": t, "pass": pass_no})
    return kept


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


def pass_end(events: Sequence[Event]) -> PassEnd:
    """How one pass ended, from its own events (see :class:`batchlab.ledger.PassEnd`).

    The parent's ``timeout`` wins (it also killed the worker); then a ``crash`` or ``kill``; then
    a ``stopped`` worker; then the processor's own end (``pass_end``, ``student_error`` of the
    import or of the run, ``input_error``); else ``died``.
    """
    if first_event(events, frozenset({Ev.TIMEOUT})) is not None:
        return PassEnd.TIMEOUT
    if first_event(events, CRASH_EVENTS) is not None:
        return PassEnd.KILLED
    if first_event(events, frozenset({Ev.STOPPED})) is not None:
        return PassEnd.STOPPED
    end = first_event(events, END_EVENTS)
    if end is None:
        return PassEnd.DIED
    if end["ev"] == Ev.STUDENT_ERROR and end.get("phase") == "import":
        return PassEnd.IMPORT_ERROR
    return PassEnd.OK if end["ev"] == Ev.PASS_END else PassEnd(end["ev"])


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
        data.pop("latencies_s")
        data.update(wall_s=self.wall_s, throughput_docs_per_min=self.throughput_docs_per_min,
                    redone=self.redone, checkpoint_hit_rate=self.checkpoint_hit_rate,
                    latency_p50_s=percentile(self.latencies_s, 50), latency_p95_s=percentile(self.latencies_s, 95))
        return data


def _opened(pass_no: int, evs: Sequence[Event]) -> PassMetrics:
    """A pass's start, end, exit, crash and returned report (or the error it raised)."""
    start_ev = first_event(evs, frozenset({Ev.PASS_START}))
    started = float(start_ev.get("t0", start_ev["t"])) if start_ev else float(evs[0]["t"])
    end_ev = first_event(evs, END_EVENTS)
    crash_ev = first_event(evs, CRASH_EVENTS)
    pm = PassMetrics(pass_no=pass_no, started=started, ended=max(float(e["t"]) for e in evs), exit=pass_end(evs),
                     crash=dict(crash_ev) if crash_ev else None)
    if end_ev is not None and end_ev["ev"] == Ev.PASS_END:
        pm.report = end_ev.get("report")
    elif end_ev is not None:
        pm.student_error = str(end_ev.get("error", ""))
    return pm


def pass_metrics(events: Sequence[Event], puts: Sequence[Event], idents: set[str] | frozenset[str]) -> list[PassMetrics]:
    """One :class:`PassMetrics` per pass: calls, retries, commits, upgrades, latencies, hits and the resume time."""
    result: list[PassMetrics] = []
    for pass_no, evs in events_by_pass(events).items():
        pm = _opened(pass_no, evs)
        committed_before = {p["ident"] for p in puts if int(p["pass"]) < pass_no}
        executed_now = {p["ident"] for p in puts if int(p["pass"]) == pass_no}
        pm.lookups = len(idents)
        pm.hits = len((committed_before & set(idents)) - executed_now)
        dispatched: dict[str, float] = {}
        first_new_call: float | None = None
        for ev in evs:
            kind = ev["ev"]
            if kind == Ev.CALL_START:
                pm.calls += 1
                if int(ev.get("attempt", 1)) > 1:
                    pm.retries += 1
                dispatched.setdefault(ev["ident"], float(ev["t"]))
                if first_new_call is None and ev["ident"] not in committed_before:
                    first_new_call = float(ev["t"])
            elif kind == Ev.CALL_FAIL:
                pm.call_failures += 1
            elif kind == Ev.SINK_PUT:
                pm.committed += 1
                pm.upgraded += 1 if ev.get("upgrade") is True else 0
                t0 = dispatched.pop(ev["ident"], None)
                if t0 is not None:
                    pm.latencies_s.append(float(ev["t"]) - t0)
        if pass_no > 1:
            if first_new_call is not None:
                pm.resume_time_s = first_new_call - pm.started
            elif not (set(idents) - committed_before):
                pm.resume_time_s = 0.0  # nothing was left to do
        result.append(pm)
    return result


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

