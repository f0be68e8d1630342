"""The metrics of docs/design.md, Metrics, computed from the ledger and the sink, never from the processor.

With N documents in the input, R rejected (invalid) ones, and U distinct
identities among the valid ones (source, normalized id, content hash):

* completion rate: identities whose committed output equals the oracle's
  (full or degraded) / U;
* duplicate rate: sum over identities of (executions - 1, when more than 1) / U,
  an execution being one committed sink write (the sink's ``puts`` table, written
  in the same transaction as the output, so a kill cannot make them disagree);
* fail rate: (identities without a correct committed output + R) / N;
* resume time: a resumed pass's process start to its first service call on an
  identity not yet committed when the pass started (0 when nothing was left);
* throughput: committed documents / pass wall time, in documents per minute;
* latency p50 / p95: per document and pass, first dispatch (first service call
  or ``processing`` report) to commit, retries included.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .contract import percentile
from .documents import Document, ident_of, try_parse
from .ledger import PassEnd, read_events
from .pipeline import output_matches
from .rundir import RunDir
from .sink import SinkRecord, read_outputs, read_puts
from .thresholds import THRESHOLDS, Threshold


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data.update(wall_s=self.wall_s, throughput_docs_per_min=self.throughput_docs_per_min,
                    latency_p50_s=percentile(self.latencies_s, 50), latency_p95_s=percentile(self.latencies_s, 95))
        return data


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
    docs_by_ident: dict[str, Document] = {}
    first_id: dict[str, str] = {}
    reasons: Counter[str] = Counter()
    rejected = 0
    for raw in documents:
        parsed = try_parse(raw)
        if isinstance(parsed, Document):
            ident = ident_of(parsed)
            docs_by_ident.setdefault(ident, parsed)
            first_id.setdefault(ident, parsed.id)
        else:
            rejected += 1
            reasons[parsed.code] += 1

    completed: set[str] = set()
    wrong: list[str] = []
    committed_degraded = 0
    for rec in outputs:
        doc = docs_by_ident.get(rec.ident)
        if doc is None:
            continue
        if output_matches(doc, rec.mode, rec.chunks, rec.vectors):
            if rec.ident not in completed and rec.mode == "degraded":
                committed_degraded += 1
            completed.add(rec.ident)
        else:
            wrong.append(rec.doc_id)
    missing = sorted(first_id[i] for i in docs_by_ident if i not in completed and i)

    put_passes: dict[str, list[int]] = defaultdict(list)
    for put in puts:
        put_passes[put["ident"]].append(int(put["pass"]))
    duplicates = [
        Duplicate(doc_id=first_id.get(ident, ident), ident=ident, executions=len(passes), passes=passes)
        for ident, passes in sorted(put_passes.items()) if len(passes) > 1
    ]

    passes = _pass_metrics(events, puts, set(docs_by_ident))
    retries = 0
    max_inflight = max_doc_inflight = max_attempt = 0
    crashes: list[dict[str, Any]] = []
    for ev in events:
        kind = ev["ev"]
        if kind == "call_start":
            max_inflight = max(max_inflight, int(ev.get("inflight", 0)))
            max_doc_inflight = max(max_doc_inflight, int(ev.get("doc_inflight", 0)))
            max_attempt = max(max_attempt, int(ev.get("attempt", 0)))
            if int(ev.get("attempt", 1)) > 1:
                retries += 1
        elif kind == "call_fail":
            reasons[str(ev.get("error"))] += 1
        elif kind in ("crash", "kill"):
            crashes.append(dict(ev))
    return Metrics(
        total=len(documents), rejected=rejected, unique=len(docs_by_ident), completed=len(completed),
        committed_degraded=committed_degraded, missing=missing, wrong_output=sorted(set(wrong)),
        duplicates=duplicates, passes=passes, failure_reasons=dict(reasons), retries=retries,
        max_inflight=max_inflight, max_doc_inflight=max_doc_inflight, max_attempts_seen=max_attempt,
        crashes=crashes,
    )


def _pass_metrics(events: Sequence[Mapping[str, Any]], puts: Sequence[Mapping[str, Any]],
                  idents: set[str]) -> list[PassMetrics]:
    by_pass: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for ev in events:
        by_pass[int(ev.get("pass", 0))].append(ev)
    result: list[PassMetrics] = []
    for pass_no in sorted(p for p in by_pass if p > 0):
        evs = by_pass[pass_no]
        start_ev = next((e for e in evs if e["ev"] == "pass_start"), None)
        started = float(start_ev.get("t0", start_ev["t"])) if start_ev else float(evs[0]["t"])
        end_ev = next((e for e in evs if e["ev"] in ("pass_end", "student_error", "input_error")), None)
        crash_ev = next((e for e in evs if e["ev"] in ("crash", "kill")), None)
        last_t = max(float(e["t"]) for e in evs)
        exit_kind = (PassEnd.KILLED if crash_ev else
                     PassEnd.OK if end_ev is not None and end_ev["ev"] == "pass_end" else
                     PassEnd(end_ev["ev"]) if end_ev is not None else PassEnd.DIED)
        pm = PassMetrics(pass_no=pass_no, started=started, ended=last_t, exit=exit_kind,
                         crash=dict(crash_ev) if crash_ev else None)
        if end_ev is not None and end_ev["ev"] == "pass_end":
            pm.report = end_ev.get("report")
        elif end_ev is not None:
            pm.student_error = str(end_ev.get("error", ""))
        committed_before = {p["ident"] for p in puts if int(p["pass"]) < pass_no}
        dispatched: dict[str, float] = {}
        first_new_call: float | None = None
        for ev in evs:
            kind = ev["ev"]
            if kind == "call_start":
                pm.calls += 1
                if int(ev.get("attempt", 1)) > 1:
                    pm.retries += 1
                dispatched.setdefault(ev["ident"], float(ev["t"]))
                if first_new_call is None and ev["ident"] not in committed_before:
                    first_new_call = float(ev["t"])
            elif kind == "call_fail":
                pm.call_failures += 1
            elif kind == "sink_put":
                pm.committed += 1
                t0 = dispatched.pop(ev["ident"], None)
                if t0 is not None:
                    pm.latencies_s.append(float(ev["t"]) - t0)
        if pass_no > 1:
            if first_new_call is not None:
                pm.resume_time_s = first_new_call - started
            elif not (idents - committed_before):
                pm.resume_time_s = 0.0  # nothing was left to do
        result.append(pm)
    return result


#: Ledger events that name a document and must carry its ``ident``.
_IDENT_EVENTS = frozenset({"call_start", "call_ok", "call_fail", "sink_put"})


def usable_events(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The events the metrics can read: a finite time ``t``, an integer ``pass``, an ``ident`` where one is due.

    The worker writes only such lines; anything else (a hand-edited or foreign
    ledger) is skipped, as a torn line is, rather than crash every command that reads it.
    """
    import math

    kept = []
    for ev in events:
        try:
            t = float(ev["t"])
            pass_no = int(ev.get("pass", 0))
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if not math.isfinite(t) or not isinstance(ev.get("ev"), str):
            continue
        if ev["ev"] in _IDENT_EVENTS and not isinstance(ev.get("ident"), str):
            continue
        if ev["ev"] == "pass_start" and "t0" in ev:
            try:
                if not math.isfinite(float(ev["t0"])):
                    continue
            except (TypeError, ValueError, OverflowError):
                continue
        kept.append({**ev, "t": t, "pass": pass_no})
    return kept


def metrics_for_run(run_dir: str | Path) -> Metrics:
    """Metrics of a run directory written by :mod:`batchlab.runner`.

    Never a traceback, whatever the directory holds: a part that cannot be read
    (spec, input, sink) raises :class:`batchlab.errors.KitError` naming it
    (``run_dir_corrupt``, ``run_input_unreadable``, ``sink_unreadable``); ledger
    lines that cannot be read are skipped (:func:`usable_events`).
    """
    import sqlite3

    from .documents import load_batch
    from .errors import KitError

    run = Path(run_dir)
    spec = _read_spec(run)
    try:
        batch = load_batch(spec["input"])
    except KitError as exc:
        raise KitError(f"the input of {run} cannot be read: {exc.message}", code="run_input_unreadable",
                       details={"run_dir": str(run), "input": spec["input"], "cause": exc.to_dict()["error"]},
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


def _read_spec(run: Path) -> dict[str, Any]:
    import json

    from .errors import KitError

    try:
        spec = json.loads(RunDir(run).spec.read_text(encoding="utf-8"))
        if not isinstance(spec, dict) or not isinstance(spec.get("input"), str):
            raise ValueError("spec.json is not an object with an `input` path")
    except (OSError, ValueError, RecursionError) as exc:
        raise KitError(f"{RunDir(run).spec} cannot be read: {type(exc).__name__}: {exc}", code="run_dir_corrupt",
                       details={"run_dir": str(run)},
                       hints=["A run directory has the spec.json `batchlab run` wrote; start a new --run-dir."]) \
            from None
    return spec


def format_value(metric: str, value: Any, *, per_min_unit: str = "docs/min") -> str:
    """One figure as the tables show it, by the metric's name: rates in %, ``*_s`` in seconds."""
    if value is None:
        return "n/a"
    if metric.endswith("_rate"):
        return f"{float(value) * 100:.2f} %"
    if metric.endswith("_s"):
        return f"{float(value):.3f} s"
    if metric.endswith("per_min"):
        return f"{float(value):,.0f} {per_min_unit}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_table(metrics: Metrics, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> str:
    """The lesson's metric table: each figure, its threshold and PASS/FAIL (or 'reported')."""
    rows = [(t.label, format_value(name, metrics.value(name)), t.text, "PASS" if ok else "FAIL")
            for (t, _, ok), name in zip(metrics.checks(thresholds), thresholds, strict=True)]
    for name, label in (("throughput_docs_per_min", "throughput"), ("latency_p50_s", "latency p50"),
                        ("latency_p95_s", "latency p95")):
        rows.append((label, format_value(name, metrics.value(name)), "reported", ""))
    rows.append(("retries", str(metrics.retries), "reported", ""))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    head = f"{'metric':<{width[0]}}  {'value':>{width[1]}}  {'threshold':<{width[2]}}  result"
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{width[0]}}  {b:>{width[1]}}  {c:<{width[2]}}  {d}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)
