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

How they are computed is :mod:`batchlab.metric_fold`: one streaming fold over the input, the
sink and the ledger, in memory bounded by :data:`batchlab.fold_store.SPILL_KEYS` whatever the
batch's size (past it, the per-key state moves to a scratch SQLite file). The figures are the same
both ways, exact (percentiles included), and equal to the list-based code this replaced
(``tests/batchlab/test_metric_fold.py`` holds it as the oracle).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .batchstream import open_batch, open_checked
from .errors import KitError
from .fold_store import SPILL_KEYS, FoldStore
from .ledger_scan import scan_ledger
from .ledger_views import PassMetrics, usable_events
from .metric_child import PARALLEL_LEDGER_BYTES, LedgerChild
from .metric_fold import Folded, fold_run
from .metric_sinks import FileSink, ListSink, SinkDamage
from .metric_split import InputSplit
from .metric_table import MetricRow, format_table, format_value, metric_rows
from .rundir import RunDir
from .runner import read_spec
from .sink import SinkRecord, connect
from .thresholds import THRESHOLDS, Threshold
from .worker import INPUT_CHECKED

__all__ = [
    "Duplicate", "MetricRow", "Metrics", "PassMetrics", "compute_metrics", "format_table", "format_value",
    "metric_rows", "metrics_for_run", "pass_metrics", "usable_events",
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
    #: per document and pass, first dispatch to commit, every pass's latencies together; exact
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None

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
        """Every pass's latencies (above ``SPILL_KEYS`` a pass gives an evenly spaced sample: for plots)."""
        return [v for p in self.passes for v in p.latencies_s]

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
    documents: Iterable[Any],
    events: Iterable[Mapping[str, Any]],
    outputs: Sequence[SinkRecord],
    puts: Sequence[Mapping[str, Any]],
    *,
    on_disk: bool | None = None,
    spill_keys: int = SPILL_KEYS,
) -> Metrics:
    """All metrics of one run (every pass of one batch) from its raw materials, given as lists.

    ``on_disk`` puts the fold's per-key state in a scratch SQLite file (default: when the batch has
    more than ``spill_keys`` entries); the figures are the same either way.
    """
    if on_disk is None:
        on_disk = len(documents) > spill_keys if isinstance(documents, Sequence) else True
    with FoldStore(on_disk=on_disk, spill_keys=spill_keys) as store:
        return _metrics(fold_run(documents, events, ListSink(outputs, puts), store))


def pass_metrics(documents: Iterable[Any], events: Iterable[Mapping[str, Any]],
                 puts: Sequence[Mapping[str, Any]]) -> list[PassMetrics]:
    """The per-pass figures alone (calls, retries, commits, upgrades, hits, exit, report): the grader's analysis."""
    return compute_metrics(documents, events, [], puts).passes


def _metrics(f: Folded) -> Metrics:
    inputs, tally = f.inputs, f.tally
    return Metrics(
        total=inputs.total, rejected=inputs.rejected, unique=inputs.unique, completed=inputs.completed,
        committed_degraded=inputs.committed_degraded, missing=sorted(inputs.missing),
        wrong_output=sorted(inputs.wrong),
        duplicates=[Duplicate(doc_id=doc_id, ident=ident, executions=len(passes), passes=passes)
                    for ident, doc_id, passes in f.duplicates],
        passes=f.passes, failure_reasons=dict(inputs.reasons + tally.call_errors), retries=tally.retries,
        max_inflight=tally.max_inflight, max_doc_inflight=tally.max_doc_inflight,
        max_attempts_seen=tally.max_attempt, crashes=tally.crashes, upgraded=f.upgraded,
        latency_p50_s=f.latency_p50_s, latency_p95_s=f.latency_p95_s,
    )


@contextlib.contextmanager
def sink_of(run: Path) -> Iterator[FileSink]:
    """The run's sink for the fold (no sink file: an empty one); a damaged file raises ``sink_unreadable``.

    Opened once the usual way first (:func:`batchlab.sink.connect`: a sink of an older kit gains its
    columns, a WAL file its shared memory), then attached read-only to the fold's store.
    """
    path = RunDir(run).sink
    conn = None
    try:
        conn = connect(path) if path.exists() else None  # held open: the read-only attach finds the WAL's files
        yield FileSink(path if conn is not None else None)
    except (sqlite3.Error, OSError, SinkDamage) as exc:
        raise KitError(f"the sink of {run} cannot be read: {type(exc).__name__}: {exc}", code="sink_unreadable",
                       details={"run_dir": str(run), "sink": str(path)},
                       hints=["`sqlite3 sink.sqlite 'PRAGMA integrity_check'` says what is wrong; "
                              "the sink is the truth of a run, so a damaged one means a new run."]) from None
    finally:
        if conn is not None:
            conn.close()


def metrics_for_run(run_dir: str | Path, *, on_disk: bool | None = None, spill_keys: int = SPILL_KEYS,
                    parallel: bool | None = None) -> Metrics:
    """Metrics of a run directory written by :mod:`batchlab.runner`, in memory bounded whatever its size.

    The input is streamed (:func:`batchlab.batchstream.open_checked`: validated first, unless the run's
    worker left a memo of this very file validated), the ledger
    read line by line, the sink looked up per identity; past ``spill_keys`` entries (or with
    ``on_disk``) the fold's per-key state goes to a scratch SQLite file in the system's temporary
    folder (not the run directory: a live worker and its checkpoint live there), deleted at the end.
    Never a traceback, whatever the directory holds: a part that cannot be read (spec, input, sink)
    raises :class:`batchlab.errors.KitError` naming it (``run_dir_corrupt``, ``run_input_unreadable``,
    ``sink_unreadable``); ledger lines that cannot be read are skipped (:func:`usable_events`).
    ``parallel`` folds the ledger in a child process meanwhile (:mod:`batchlab.metric_child`; default:
    a ledger of :data:`batchlab.metric_child.PARALLEL_LEDGER_BYTES` or more on a machine of two cores or more);
    the figures are the same either way.
    """
    run = Path(run_dir)
    spec = read_spec(run)
    memo = run / INPUT_CHECKED  # the worker validated this very file (same size and time): not read twice
    try:
        try:
            stream = open_checked(spec.input, memo if memo.is_file() else None)
        except OSError:  # a stale memo in a read-only run directory: validated, not rewritten
            stream = open_batch(spec.input)
    except KitError as exc:
        raise _input_error(run, spec.input, exc) from None
    if on_disk is None:
        on_disk = (stream.header.documents or 0) > spill_keys
    child = LedgerChild(run, on_disk=on_disk, spill_keys=spill_keys) if _parallel(run, parallel) else None
    split = InputSplit(stream, child) if child is not None else None
    try:
        with sink_of(run) as sink, FoldStore(on_disk=on_disk, spill_keys=spill_keys) as store:
            return _fold_metrics(run, spec.input, stream, sink, store, child, split)
    finally:
        if child is not None:
            child.close()
        if split is not None:
            split.close()


def _parallel(run: Path, parallel: bool | None) -> bool:
    if parallel is not None:
        return parallel
    try:
        size = RunDir(run).ledger.stat().st_size
    except OSError:
        return False
    return size >= PARALLEL_LEDGER_BYTES and (os.cpu_count() or 1) > 1


def _fold_metrics(run: Path, source: Path, stream: Iterable[Any], sink: FileSink, store: FoldStore,
                  child: LedgerChild | None, split: InputSplit | None) -> Metrics:
    """:func:`metrics_for_run`'s fold, with the ledger's half (and perhaps the input's end) from ``child``."""
    try:
        events = scan_ledger(RunDir(run).ledger)
        if child is None or split is None:
            return _metrics(fold_run(stream, events, sink, store))
        return _metrics(fold_run(split.documents(), events, sink, store, ledger=child.result, between=split.poll,
                                 rest=split.rest))
    except KitError as exc:  # the input changed under the stream
        raise _input_error(run, source, exc) from None
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError, RecursionError) as exc:
        raise KitError(f"the records of {run} do not add up: {type(exc).__name__}: {exc}",
                       code="run_dir_corrupt", details={"run_dir": str(run)},
                       hints=["A run directory is written by `batchlab run`/`demo` only; start a new one."]) from None


def _input_error(run: Path, source: Path, exc: KitError) -> KitError:
    return KitError(f"the input of {run} cannot be read: {exc.message}", code="run_input_unreadable",
                    details={"run_dir": str(run), "input": str(source), "cause": exc.to_dict()["error"]},
                    hints=["The metrics compare the sink with the run's input: restore the input file at that path, "
                           "unchanged."])
