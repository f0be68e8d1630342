"""The metrics as they were computed before the streaming fold (issue 17, item 4): the test oracle.

A verbatim copy of ``labs/batchlab/metrics.py`` and ``ledger_views.py`` (their metric parts) at the
commit before the fold, every list in memory. ``tests/batchlab/test_metric_fold.py`` checks that the
fold gives the same figures on real runs; nothing else imports it.
"""
# ruff: noqa
from __future__ import annotations
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from batchlab.contract import percentile
from batchlab.ledger import CRASH_EVENTS, END_EVENTS, Ev, PassEnd
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from batchlab.batchfile import load_batch
from batchlab.errors import KitError
from batchlab.inventory import Inventory
from batchlab.ledger import CRASH_EVENTS, Ev, read_events
from batchlab.metric_table import MetricRow, format_table, format_value, metric_rows
from batchlab.pipeline import output_matches
from batchlab.rundir import RunDir
from batchlab.runner import read_spec
from batchlab.sink import SinkRecord, read_outputs, read_puts
from batchlab.thresholds import THRESHOLDS, Threshold

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



@dataclass
class Duplicate:
    """An identity committed more than once: which documents, in which passes."""

    doc_id: str
    ident: str
    executions: int
    passes: list[int]

    def describe(self) -> str:
        where = ", ".join(f"pass {p}" for p in self.passes)
        return f"{self.doc_id} executed {self.executions} times ({where})"


@dataclass
class Metrics:
    total: int
    rejected: int
    unique: int
    completed: int
    committed_degraded: int
    missing: list[str]
    wrong_output: list[str]
    duplicates: list[Duplicate]
    passes: list[PassMetrics]
    failure_reasons: dict[str, int]
    retries: int
    max_inflight: int
    max_doc_inflight: int
    max_attempts_seen: int
    crashes: list[dict[str, Any]]
    upgraded: int = 0

    @property
    def completion_rate(self) -> float:
        return self.completed / self.unique if self.unique else 1.0

    @property
    def duplicate_rate(self) -> float:
        extra = sum(d.executions - 1 for d in self.duplicates)
        return extra / self.unique if self.unique else 0.0

    @property
    def fail_rate(self) -> float:
        return (self.unique - self.completed + self.rejected) / self.total if self.total else 0.0

    @property
    def resume_time_s(self) -> float | None:
        """The slowest resume among resumed passes; None if a resumed pass never got going."""
        resumed = self.passes[1:]
        if not resumed:
            return None
        values = [p.resume_time_s for p in resumed]
        return None if any(v is None for v in values) else max(values)  # type: ignore[type-var]

    @property
    def checkpoint_hit_rate(self) -> float | None:
        """The last resumed pass's hits / U (:attr:`PassMetrics.checkpoint_hit_rate`); None without a resumed pass."""
        resumed = self.passes[1:]
        return resumed[-1].checkpoint_hit_rate if resumed else None

    @property
    def throughput_docs_per_min(self) -> float:
        wall = sum(p.wall_s for p in self.passes)
        return 60.0 * sum(p.committed for p in self.passes) / wall if wall > 0 else 0.0

    @property
    def latencies_s(self) -> list[float]:
        return [v for p in self.passes for v in p.latencies_s]

    @property
    def latency_p50_s(self) -> float | None:
        return percentile(self.latencies_s, 50)

    @property
    def latency_p95_s(self) -> float | None:
        return percentile(self.latencies_s, 95)

    def value(self, metric: str) -> float | None:
        value: float | None = getattr(self, metric)
        return value

    def checks(self, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> list[tuple[Threshold, float | None, bool]]:
        """Each threshold with the measured value and whether it passes."""
        return [(t, self.value(name), t.passes(self.value(name))) for name, t in thresholds.items()]

    def meets_thresholds(self, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> bool:
        return all(ok for _, _, ok in self.checks(thresholds))

    def summary(self) -> dict[str, Any]:
        """The headline figures, as in the lesson (rates as fractions, times in seconds)."""
        return {
            "documents": self.total, "unique": self.unique, "rejected": self.rejected,
            "completed": self.completed, "degraded": self.committed_degraded,
            "completion_rate": self.completion_rate, "duplicate_rate": self.duplicate_rate,
            "fail_rate": self.fail_rate, "resume_time_s": self.resume_time_s,
            "throughput_docs_per_min": self.throughput_docs_per_min,
            "latency_p50_s": self.latency_p50_s, "latency_p95_s": self.latency_p95_s,
            "retries": self.retries, "passes": len(self.passes),
            "upgraded": self.upgraded, "checkpoint_hit_rate": self.checkpoint_hit_rate,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "missing": self.missing, "wrong_output": self.wrong_output,
            "duplicates": [asdict(d) for d in self.duplicates],
            "failure_reasons": self.failure_reasons, "max_inflight": self.max_inflight,
            "max_doc_inflight": self.max_doc_inflight, "max_attempts_seen": self.max_attempts_seen,
            "crashes": self.crashes, "per_pass": [p.to_dict() for p in self.passes],
        }


def compute_metrics(
    documents: Sequence[Any],
    events: Sequence[Mapping[str, Any]],
    outputs: Sequence[SinkRecord],
    puts: Sequence[Mapping[str, Any]],
) -> Metrics:
    """All metrics of one run (every pass of one batch) from its raw materials."""
    inventory = Inventory.of(documents)
    completed: set[str] = set()
    wrong: list[str] = []
    committed_degraded = 0
    for rec in outputs:
        doc = inventory.by_ident.get(rec.ident)
        if doc is None:
            continue
        if output_matches(doc, rec.mode, rec.chunks, rec.vectors):
            if rec.ident not in completed and rec.mode == "degraded":
                committed_degraded += 1
            completed.add(rec.ident)
        else:
            wrong.append(rec.doc_id)
    missing = sorted(doc.id for ident, doc in inventory.by_ident.items() if ident not in completed and ident)
    duplicates = [
        Duplicate(doc_id=inventory.first_id(ident), ident=ident, executions=len(passes), passes=passes)
        for ident, passes in sorted(puts_by_ident(puts).items()) if len(passes) > 1
    ]
    tally = _Tally.of(events)
    reasons = inventory.reasons() + tally.call_errors
    return Metrics(
        total=inventory.total, rejected=inventory.rejected, unique=inventory.unique, completed=len(completed),
        committed_degraded=committed_degraded, missing=missing, wrong_output=sorted(set(wrong)),
        duplicates=duplicates, passes=pass_metrics(events, puts, inventory.idents),
        failure_reasons=dict(reasons), retries=tally.retries, max_inflight=tally.max_inflight,
        max_doc_inflight=tally.max_doc_inflight, max_attempts_seen=tally.max_attempt, crashes=tally.crashes,
        upgraded=sum(1 for put in puts if is_upgrade(put)),
    )


@dataclass
class _Tally:
    """Run-wide figures of the whole ledger: retries, peak concurrency, failed calls by error, interruptions."""

    retries: int = 0
    max_inflight: int = 0
    max_doc_inflight: int = 0
    max_attempt: int = 0
    call_errors: Counter[str] = field(default_factory=Counter)
    crashes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, events: Sequence[Mapping[str, Any]]) -> _Tally:
        tally = cls()
        for ev in events:
            kind = ev["ev"]
            if kind == Ev.CALL_START:
                tally.max_inflight = max(tally.max_inflight, int(ev.get("inflight", 0)))
                tally.max_doc_inflight = max(tally.max_doc_inflight, int(ev.get("doc_inflight", 0)))
                tally.max_attempt = max(tally.max_attempt, int(ev.get("attempt", 0)))
                if int(ev.get("attempt", 1)) > 1:
                    tally.retries += 1
            elif kind == Ev.CALL_FAIL:
                tally.call_errors[str(ev.get("error"))] += 1
            elif kind in CRASH_EVENTS:
                tally.crashes.append(dict(ev))
        return tally


def metrics_for_run(run_dir: str | Path) -> Metrics:
    """Metrics of a run directory written by :mod:`batchlab.runner`.

    Never a traceback, whatever the directory holds: a part that cannot be read
    (spec, input, sink) raises :class:`batchlab.errors.KitError` naming it
    (``run_dir_corrupt``, ``run_input_unreadable``, ``sink_unreadable``); ledger
    lines that cannot be read are skipped (:func:`usable_events`).
    """
    run = Path(run_dir)
    spec = read_spec(run)
    try:
        batch = load_batch(spec.input)
    except KitError as exc:
        raise KitError(f"the input of {run} cannot be read: {exc.message}", code="run_input_unreadable",
                       details={"run_dir": str(run), "input": str(spec.input), "cause": exc.to_dict()["error"]},
                       hints=["The metrics compare the sink with the run's input: restore the input file "
                              "at that path, unchanged."]) from None
    try:
        outputs = read_outputs(RunDir(run).sink)
        puts = read_puts(RunDir(run).sink)
    except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
        raise KitError(f"the sink of {run} cannot be read: {type(exc).__name__}: {exc}", code="sink_unreadable",
                       details={"run_dir": str(run), "sink": str(RunDir(run).sink)},
                       hints=["`sqlite3 sink.sqlite 'PRAGMA integrity_check'` says what is wrong; "
                              "the sink is the truth of a run, so a damaged one means a new run."]) from None
    try:
        return compute_metrics(batch.documents, usable_events(read_events(RunDir(run).ledger)), outputs, puts)
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError, OSError, RecursionError) as exc:
        raise KitError(f"the records of {run} do not add up: {type(exc).__name__}: {exc}",
                       code="run_dir_corrupt", details={"run_dir": str(run)},
                       hints=["A run directory is written by `batchlab run`/`demo` only; start a new one."]) from None
