"""The metrics of docs/design.md, Metrics, computed from the ledger and the sink, never from the processor.

With N documents in the input, R rejected (invalid) ones, and U distinct
identities among the valid ones (source, normalized id, content hash):

* completion rate: identities whose committed output equals the oracle's
  (full or degraded) / U;
* duplicate rate: sum over identities of (executions - 1, when more than 1) / U,
  an execution being one committed sink write (the sink's ``puts`` table, written
  in the same transaction as the output, so a kill cannot make them disagree)
  that is not an upgrade;
* upgrades (后续标记待补, backfill): committed writes that replaced an identity's
  degraded output with its full one (``puts.upgrade``); new work, never a duplicate;
  reported;
* checkpoint hit rate (检查点命中率): for a resumed pass, the valid identities
  committed before it began that it did not execute again (found finished in the
  checkpoint or the sink) / U; the rest (U - hits) it had to do or redo. The
  run's figure is its last resumed pass's; reported (None without a resume);
* fail rate: (identities without a correct committed output + R) / N;
* resume time: a resumed pass's process start to its first service call on an
  identity not yet committed when the pass started (0 when nothing was left);
* throughput: committed documents / pass wall time, in documents per minute;
* latency p50 / p95: per document and pass, first dispatch (first service call
  or ``processing`` report) to commit, retries included.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .batchfile import load_batch
from .contract import percentile
from .errors import KitError
from .inventory import Inventory
from .ledger import CRASH_EVENTS, Ev, read_events
from .ledger_views import PassMetrics, is_upgrade, pass_metrics, puts_by_ident, usable_events
from .metric_table import MetricRow, format_table, format_value, metric_rows
from .pipeline import output_matches
from .rundir import RunDir
from .runner import read_spec
from .sink import SinkRecord, read_outputs, read_puts
from .thresholds import THRESHOLDS, Threshold

__all__ = [
    "Duplicate", "MetricRow", "Metrics", "PassMetrics", "compute_metrics", "format_table", "format_value",
    "metric_rows", "metrics_for_run", "usable_events",
]


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
