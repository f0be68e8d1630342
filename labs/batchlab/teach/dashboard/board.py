"""What the dashboard shows, as plain values: its settings, the phases, the immutable snapshot, the live fold.

Apart from :class:`~.model.DashboardModel` (which runs workers) so that a reader finds the
dashboard's vocabulary in one short module, and the renderers (:mod:`.render`) and tests can use
it without starting anything. :class:`StateBoard` folds ledger events into per-document states,
the way the metrics fold the ledger after a pass, so that the tiles never trust the processor's memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...contract import DEGRADED, DONE, FAILED, PENDING, PROCESSING, STATES, TERMINAL_STATES
from ...documents import Document, ident_of, normalize_id, try_parse
from ...errors import KitError
from ...faults import CRASH_KINDS, CRASH_NONE
from ...metrics import (
    Metrics,
    format_value,  # the one formatting of figures, shared with format_table
)
from ...thresholds import THRESHOLDS, Threshold

#: Phases of the dashboard, as its status line shows them.
IDLE = "idle"
RUNNING = "running"
KILLED = "killed"
FINISHED = "finished"
ERROR = "error"

#: ``kind`` of the ledger's ``kill`` event when the teacher pressed *Crash now*.
MANUAL_KILL = "manual"


class DashboardError(KitError):
    """An action that does not fit the dashboard's state (Resume before Run, a bad setting ...)."""

    default_code = "dashboard_error"


@dataclass(frozen=True)
class DashboardSettings:
    """The controls. ``fault_rate`` is a fraction (0.03 is 3 %), as in :class:`FaultPlan`.

    ``latency_ms`` is the simulated service's median latency: 20 ms makes a
    120-document batch last several seconds, long enough for a teacher to press
    *Crash now* in the middle. ``crash_fraction`` places a planned crash
    (``during_call``, ``after_commit``) at that fraction of the pass's work;
    ``random_window`` is the range of a ``random`` kill's delay after the pass's first
    service call (as in :func:`batchlab.runner.run_pass`).
    """

    documents: int = 120
    fault_rate: float = 0.03
    concurrency: int = 8
    crash: str = CRASH_NONE
    seed: int = 15
    latency_ms: float = 20.0
    crash_fraction: float = 0.4
    random_window: tuple[float, float] = (0.5, 2.5)

    def validate(self) -> DashboardSettings:
        problems: dict[str, Any] = {}
        if not 1 <= self.documents <= 5000:
            problems["documents"] = self.documents
        if not 0.0 <= self.fault_rate <= 0.5:
            problems["fault_rate"] = self.fault_rate
        if not 1 <= self.concurrency <= 256:
            problems["concurrency"] = self.concurrency
        if self.crash not in CRASH_KINDS:
            problems["crash"] = self.crash
        if self.latency_ms < 0:
            problems["latency_ms"] = self.latency_ms
        if not 0.0 < self.crash_fraction < 1.0:
            problems["crash_fraction"] = self.crash_fraction
        if problems:
            raise DashboardError(
                f"bad dashboard setting(s): {', '.join(problems)}", code="bad_setting", details=problems,
                hints=["documents 1-5000, fault_rate 0-0.5 (0.03 is 3 %), concurrency 1-256, "
                       f"crash one of {', '.join(CRASH_KINDS)}."])
        return self


@dataclass(frozen=True)
class Marker:
    """A moment on the completion plot: a crash (``kind`` crash) or a resume (``kind`` resume)."""

    t: float
    kind: str
    label: str


@dataclass(frozen=True)
class MetricRow:
    """One line of the metric table; ``ok`` is None for figures that are reported, not judged."""

    label: str
    value: str
    bound: str
    ok: bool | None


@dataclass(frozen=True)
class PassInfo:
    """One worker process as the dashboard saw it."""

    pass_no: int
    pid: int
    outcome: str
    duration_s: float


@dataclass(frozen=True)
class Snapshot:
    """Everything a view shows, at one instant. Immutable, so a view thread can read it freely."""

    phase: str
    pass_no: int
    pid: int | None
    run_dir: str | None
    counts: Mapping[str, int]
    total: int
    retries: int
    duplicates: int
    calls: int
    elapsed_s: float
    series: tuple[tuple[float, int], ...]
    markers: tuple[Marker, ...]
    metrics: tuple[MetricRow, ...]
    passes: tuple[PassInfo, ...]
    message: str
    settings: DashboardSettings
    #: The worker's latest resource sample (``batchlab.resources``: cpu_percent, rss_bytes, open_files,
    #: disk_bytes), or None before the first one.
    resources: Mapping[str, Any] | None = None

    @property
    def finished(self) -> int:
        """Documents in a terminal state (done, degraded or failed)."""
        return sum(self.counts[s] for s in TERMINAL_STATES)

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 0.0

    @property
    def live(self) -> bool:
        return self.phase == RUNNING

    @property
    def metrics_ok(self) -> bool | None:
        """All thresholds met (None before the first pass ended)."""
        judged = [m.ok for m in self.metrics if m.ok is not None]
        return all(judged) if judged else None


class StateBoard:
    """The state of every document of a batch, folded from ledger events.

    A *unit* is what the lesson counts once: a distinct identity among the valid
    documents (duplicates in the input fold into one), or one invalid entry.
    Ground truth wins over what the processor says: ``done``/``degraded`` come
    from the sink's ``sink_put`` events (with their mode), ``processing`` from a
    service call or a ``processing`` report, ``failed`` from the processor's
    ``failed`` report (nothing else can say it). A terminal state is never
    downgraded: a later call on a committed document is a duplicate execution,
    counted as such, not a document going back to work. A document that was
    ``processing`` when a worker died stays ``processing`` (that is exactly what
    its checkpoint says) until a resume finishes it.
    """

    def __init__(self, documents: Sequence[Any]) -> None:
        self.units: list[str] = []
        self._by_ident: dict[str, str] = {}
        self._by_doc_id: dict[str, str] = {}
        self._invalid: list[str] = []
        for index, raw in enumerate(documents):
            parsed = try_parse(raw)
            if isinstance(parsed, Document):
                ident = ident_of(parsed)
                if ident not in self._by_ident:
                    self._by_ident[ident] = ident
                    self.units.append(ident)
                for name in (parsed.id, normalize_id(parsed.id)):
                    self._by_doc_id.setdefault(name, ident)
            else:
                unit = f"invalid#{index}"
                self.units.append(unit)
                self._invalid.append(unit)
                self._by_doc_id.setdefault(unit, unit)
                raw_id = raw.get("id") if isinstance(raw, Mapping) else None
                if raw_id is not None:
                    self._by_doc_id.setdefault(str(raw_id), unit)
        self.state: dict[str, str] = dict.fromkeys(self.units, PENDING)
        self.retries = 0
        self.calls = 0
        self.duplicates = 0

    @property
    def total(self) -> int:
        return len(self.units)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state in self.state.values():
            counts[state] += 1
        return counts

    def finished(self) -> int:
        return sum(1 for s in self.state.values() if s in TERMINAL_STATES)

    def _unit_of_doc(self, doc_id: Any) -> str | None:
        name = str(doc_id)
        return self._by_doc_id.get(name) or self._by_doc_id.get(normalize_id(name))

    def _set(self, unit: str | None, state: str) -> None:
        if unit is None or unit not in self.state:
            return
        current = self.state[unit]
        if current in (DONE, DEGRADED):
            return  # committed output is final
        if state == PROCESSING and current != PENDING:
            return
        self.state[unit] = state

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one ledger event in."""
        kind = event.get("ev")
        if kind == "call_start":
            self.calls += 1
            if int(event.get("attempt", 1) or 1) > 1:
                self.retries += 1
            self._set(self._by_ident.get(str(event.get("ident"))), PROCESSING)
        elif kind == "sink_put":
            if int(event.get("writes", 1) or 1) > 1:
                self.duplicates += 1
            state = DEGRADED if event.get("mode") == "degraded" else DONE
            self._set(self._by_ident.get(str(event.get("ident"))), state)
        elif kind == "state":
            reported = event.get("state")
            unit = self._unit_of_doc(event.get("doc_id"))
            if reported == PROCESSING:
                self._set(unit, PROCESSING)
            elif reported == FAILED:
                if unit is None:  # an invalid entry the processor named its own way
                    unit = next((u for u in self._invalid if self.state[u] != FAILED), None)
                self._set(unit, FAILED)


def metric_rows(metrics: Metrics, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> tuple[MetricRow, ...]:
    """The lesson's metric table: thresholds judged (green or red), then the reported figures."""
    rows = [MetricRow(t.label, format_value(name, value), t.text, ok)
            for name, (t, value, ok) in zip(thresholds, metrics.checks(thresholds), strict=True)]
    for name, label in (("throughput_docs_per_min", "throughput"), ("latency_p50_s", "latency p50"),
                        ("latency_p95_s", "latency p95")):
        rows.append(MetricRow(label, format_value(name, metrics.value(name)), "reported", None))
    rows.append(MetricRow("retries", str(metrics.retries), "reported", None))
    return tuple(rows)
