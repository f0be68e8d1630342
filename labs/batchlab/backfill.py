"""后续标记待补 (backfill): one more pass of a run directory's batch that redoes its degraded documents in full.

A document that took the degraded path (the service was down, or failed it for good) is
committed ``degraded``: clean, fixed-size chunks and a local embedding, so the batch
converged. Once the service is healthy again, a backfill pass sends exactly those
documents through the full path: the processor runs with ``BatchConfig.backfill``
(degraded keys are redone, every other committed key is still skipped), the sink
replaces each degraded output with the full one and records the put as an *upgrade*
(``sink_put.upgrade`` in the ledger, ``puts.upgrade`` in the sink), and the metrics
count upgrades apart from duplicate executions (:mod:`batchlab.metrics`).

"Healthy" is the run's own fault plan without what made the documents degrade: no
outage, no permanent faults, no stuck calls (transient faults stay: they are the
service's normal life, and retries absorb them). A run whose live outage switch is on
is refused: the service is still down. ``batchlab backfill RUN_DIR``, the teacher
dashboard's button and the grader's backfill scenario all start the pass from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KitError
from .faults import FaultPlan
from .ledger import read_events
from .metrics import Metrics, metrics_for_run
from .rundir import RunDir
from .runlock import DEFAULT_LOCK_WAIT_S, RunDirLock
from .runner import EventsCallback, PassResult, RunSpec, prepare, read_spec, run_pass

__all__ = ["BackfillResult", "backfill_spec", "healthy_plan", "require_backfillable", "run_backfill"]


def healthy_plan(plan: FaultPlan) -> FaultPlan:
    """``plan`` with the service healthy again: no outage, no permanent fault, no stuck call (transient faults stay)."""
    return dataclasses.replace(plan, outages=(), permanent_ids=(), permanent_rate=0.0, stuck_ids=(), stuck_rate=0.0)


def backfill_spec(spec: RunSpec) -> RunSpec:
    """The spec of a backfill pass: ``config.backfill`` on, the service healthy (:func:`healthy_plan`)."""
    return dataclasses.replace(spec, config=dataclasses.replace(spec.config, backfill=True),
                               plan=healthy_plan(spec.plan))


def require_backfillable(run_dir: str | Path) -> RunDir:
    """The run directory, if a backfill can run there: it is a run, and its service's outage switch is off."""
    run = RunDir(Path(run_dir))
    if not run.spec.is_file():
        raise KitError(f"{run_dir} is not a run directory (no {run.spec.name})", code="not_a_run",
                       details={"run_dir": str(run_dir)},
                       hints=["A run directory has spec.json and ledger.jsonl (from `batchlab demo` or `run`)."])
    if run.outage_switch.exists():
        raise KitError(f"the service of {run_dir} is still down (its outage switch is on): a backfill needs it "
                       "healthy", code="service_down", details={"run_dir": str(run_dir)},
                       hints=[f"`batchlab outage {run_dir} off` brings it back; then backfill."])
    return run


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did: degraded documents before and after, upgrades and new duplicate executions."""

    run_dir: Path
    degraded_before: int
    degraded_after: int
    upgraded: int
    duplicates: int
    pass_result: PassResult | None = None  #: None when there was nothing to backfill (no pass ran)
    metrics: Metrics | None = None

    @property
    def ran(self) -> bool:
        return self.pass_result is not None

    def to_dict(self) -> dict[str, Any]:
        passed = self.pass_result
        return {"run_dir": str(self.run_dir), "degraded_before": self.degraded_before,
                "degraded_after": self.degraded_after, "upgraded": self.upgraded, "duplicates": self.duplicates,
                "pass": None if passed is None else {"pass": passed.pass_no, "outcome": passed.outcome,
                                                     "duration_s": round(passed.duration_s, 3)}}

    def summary(self) -> str:
        if not self.ran:
            return f"nothing to backfill: 0 degraded documents in {self.run_dir}; 0 upgraded"
        return (f"backfill: {self.degraded_before} degraded before, {self.upgraded} upgraded to full, "
                f"{self.degraded_after} still degraded; {self.duplicates} duplicate executions")


def _extra_executions(metrics: Metrics) -> int:
    return sum(d.executions - 1 for d in metrics.duplicates)


def run_backfill(run_dir: str | Path, *, wait_s: float = DEFAULT_LOCK_WAIT_S,
                 on_events: EventsCallback | None = None,
                 stop: Callable[[], str | None] | None = None) -> BackfillResult:
    """One backfill pass of the run in ``run_dir`` (:func:`backfill_spec`), or none when nothing is degraded.

    Takes the run directory's lock first (a running batch: ``run_dir_busy`` after
    ``wait_s``, touching nothing). The spec is written for the pass and put back as it
    was afterwards, so the next ``batchlab run`` or resume sees the run's own settings.
    """
    run = require_backfillable(run_dir)
    with RunDirLock(run.path, role="batchlab backfill").acquire(wait_s) as lock:
        spec = read_spec(run.path)
        before = metrics_for_run(run.path)
        if before.committed_degraded == 0:
            return BackfillResult(run.path, 0, 0, 0, 0, None, before)
        pass_no = 1 + max((int(e.get("pass", 0)) for e in read_events(run.ledger)
                           if isinstance(e.get("pass"), int)), default=0)
        original = run.spec.read_text(encoding="utf-8")
        try:
            passing = backfill_spec(spec)
            prepare(passing)
            result = run_pass(passing, pass_no, on_events=on_events, lock=lock, stop=stop)
        finally:
            run.spec.write_text(original, encoding="utf-8")
        after = metrics_for_run(run.path)
    return BackfillResult(run.path, before.committed_degraded, after.committed_degraded,
                          after.upgraded - before.upgraded, _extra_executions(after) - _extra_executions(before),
                          result, after)
