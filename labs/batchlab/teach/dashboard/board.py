"""What the dashboard shows, as plain values: its settings, the phases, the immutable snapshot, the live fold.

Apart from :class:`~.model.DashboardModel` (which runs workers) so that a reader finds the
dashboard's vocabulary in one short module, and the renderers (:mod:`.render`) and tests can use
it without starting anything. :class:`StateBoard` folds ledger events into per-document states,
the way the metrics fold the ledger after a pass, so that the tiles never trust the processor's memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...contract import DEGRADED, DONE, FAILED, PENDING, PROCESSING, STATES, TERMINAL_STATES, BatchConfig
from ...defaults import LESSON
from ...documents import Batch, Inventory, normalize_id
from ...errors import KitError
from ...faults import (
    CRASH_AFTER_COMMIT,
    CRASH_DURING_CALL,
    CRASH_KINDS,
    CRASH_NONE,
    CRASH_RANDOM,
    CrashPlan,
    FaultPlan,
)
from ...ledger import Ev, PassEnd
from ...metric_table import MetricRow, metric_rows  # the one table builder (re-exported for the model's users)
from ...pipeline import planned_calls
from ...runner import PassResult, RunSpec
from ...service import LatencyModel

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

    documents: int = LESSON.documents
    fault_rate: float = LESSON.fault_rate
    concurrency: int = LESSON.concurrency
    crash: str = CRASH_NONE
    seed: int = LESSON.seed
    latency_ms: float = 2 * LESSON.latency_ms  # slower than the demo: a teacher has time to press Crash now
    crash_fraction: float = 0.4
    random_window: tuple[float, float] = (0.5, 2.5)

    def run_spec(self, impl: Path, batch: Batch, run_dir: Path, *, timeout_s: float) -> RunSpec:
        """The run these settings describe, on ``batch`` (a file of its own in ``run_dir``)."""
        assert batch.path is not None
        return RunSpec(impl=impl, input=Path(batch.path), run_dir=run_dir, batch_id=batch.batch_id or "batch-001",
                       config=BatchConfig(concurrency=self.concurrency),
                       plan=FaultPlan(seed=self.seed, transient_rate=self.fault_rate),
                       latency=LatencyModel(median_ms=self.latency_ms), timeout_s=timeout_s)

    def crash_plan(self, batch: Batch) -> CrashPlan:
        """Pass 1's planned crash: at ``crash_fraction`` of the planned calls or commits, or a random kill."""
        kind, fraction = self.crash, self.crash_fraction
        if kind == CRASH_DURING_CALL:
            return CrashPlan(kind=kind, at=max(1, int(planned_calls(batch) * fraction)))
        if kind == CRASH_AFTER_COMMIT:
            return CrashPlan(kind=kind, at=max(1, int(batch.inventory().unique * fraction)))
        if kind == CRASH_RANDOM:
            return CrashPlan(kind=kind, window=self.random_window)
        return CrashPlan()

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
    """A moment on the completion plot: a crash, a resume, or the service going down or up (``outage``)."""

    t: float
    kind: str
    label: str


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
    #: The teacher has disconnected the external model (the run's outage switch is on).
    outage: bool = False

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
        for entry in Inventory.of(documents).entries:
            if entry.document is not None and entry.ident is not None:
                ident = entry.ident
                if ident not in self._by_ident:
                    self._by_ident[ident] = ident
                    self.units.append(ident)
                for name in (entry.document.id, normalize_id(entry.document.id)):
                    self._by_doc_id.setdefault(name, ident)
            else:
                unit = f"invalid#{entry.index}"
                self.units.append(unit)
                self._invalid.append(unit)
                self._by_doc_id.setdefault(unit, unit)
                if entry.raw_id is not None:
                    self._by_doc_id.setdefault(str(entry.raw_id), unit)
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
        if kind == Ev.CALL_START:
            self.calls += 1
            if int(event.get("attempt", 1) or 1) > 1:
                self.retries += 1
            self._set(self._by_ident.get(str(event.get("ident"))), PROCESSING)
        elif kind == Ev.SINK_PUT:
            if int(event.get("writes", 1) or 1) > 1:
                self.duplicates += 1
            state = DEGRADED if event.get("mode") == "degraded" else DONE
            unit = self._by_ident.get(str(event.get("ident")))
            if event.get("upgrade") is True and unit in self.state:  # a backfill replaced the degraded output
                self.state[unit] = DONE
            self._set(unit, state)
        elif kind == Ev.STATE:
            reported = event.get("state")
            unit = self._unit_of_doc(event.get("doc_id"))
            if reported == PROCESSING:
                self._set(unit, PROCESSING)
            elif reported == FAILED:
                if unit is None:  # an invalid entry the processor named its own way
                    unit = next((u for u in self._invalid if self.state[u] != FAILED), None)
                self._set(unit, FAILED)


__all__ = [
    "DashboardError", "DashboardSettings", "Marker", "MetricRow", "PassInfo", "Snapshot", "StateBoard", "ended_pass",
    "metric_rows", "IDLE", "RUNNING", "KILLED", "FINISHED", "ERROR", "MANUAL_KILL",
]


def ended_pass(result: PassResult, pid: int, counts: Mapping[str, int], output: str) -> tuple[str, str]:
    """The phase and the status line once a pass ended: finished, killed (press Resume), or an error with its output."""
    if result.end == PassEnd.OK:
        left = counts[PENDING] + counts[PROCESSING]
        return FINISHED, (f"pass {result.pass_no} finished in {result.duration_s:.1f} s"
                          + (f"; {left} documents not finished" if left else "; batch complete"))
    if result.end == PassEnd.KILLED:
        return KILLED, (f"pass {result.pass_no} killed by SIGKILL (pid {pid}); "
                        f"{counts[PROCESSING]} documents left in processing. Press Resume.")
    return ERROR, f"pass {result.pass_no} ended: {result.outcome}. {output.strip()}"
