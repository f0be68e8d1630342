"""An acceptance scenario as plain data: its input, fault plan, crash plans, config and points.

The scenarios themselves are in :mod:`grader.scenarios` (public) and ``grader/hidden/scenarios.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Batch
from batchlab.faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CRASH_NONE, CRASH_RANDOM, CrashPlan, FaultPlan
from batchlab.pipeline import planned_calls
from batchlab.service import LatencyModel

from .scenario_inputs import INPUTS

#: Points of the checks every scenario has.
BASE_POINTS = {
    "completion": 1.0, "duplicate rate": 1.0, "fail rate": 0.5, "resume time": 0.5,
    "exactly-once": 1.0, "report agrees with ledger": 1.0,
}

LATENCY = LatencyModel(median_ms=2.0, sigma=0.4)
#: ``Scenario.between``: delete the run's state folder (every checkpoint file in it) before every resume pass.
#: The sink is the source of truth; a processor must rebuild its checkpoint (the index) from it and redo nothing.
FORGET_CHECKPOINT = "forget_checkpoint"


@dataclass(frozen=True)
class Crash:
    """A crash plan relative to the input: ``at`` as a fraction of the planned calls, or an absolute count."""

    kind: str = CRASH_NONE
    at_fraction: float | None = None
    at: int = 0
    window: tuple[float, float] = (0.05, 0.35)

    def plan(self, calls: int) -> CrashPlan:
        at = self.at
        if self.at_fraction is not None:
            at = max(1, int(calls * self.at_fraction))
        return CrashPlan(kind=self.kind, at=at if self.kind in (CRASH_DURING_CALL, CRASH_AFTER_COMMIT) else 0,
                         window=self.window)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    input: str
    seed: int
    plan: FaultPlan
    crashes: tuple[Crash, ...]
    config: BatchConfig = BatchConfig()
    latency: LatencyModel = LATENCY
    timeout_s: float = 60.0
    extra: tuple[str, ...] = ()
    hidden: bool = False
    flow: str = "passes"  # "passes", "bad_input", or "backfill" (the passes, then a backfill pass)
    #: Done by the grader before every resume pass (pass 2 on), e.g. :data:`FORGET_CHECKPOINT`.
    between: str = ""

    def documents(self) -> list[dict[str, Any]]:
        return INPUTS[self.input](self.seed)

    def crash_plans(self, documents: list[dict[str, Any]]) -> list[CrashPlan]:
        calls = planned_calls(Batch(documents=list(documents)))
        return [c.plan(calls) for c in self.crashes]

    @property
    def points(self) -> float:
        return sum(BASE_POINTS.values()) + sum(EXTRA_POINTS[e] for e in self.extra)

    def describe_crashes(self, plans: Sequence[CrashPlan]) -> str:
        if self.flow == "bad_input":
            return "pass 1: the good batch; pass 2: a malformed batch file; pass 3: resume of the good batch"
        parts = []
        for n, p in enumerate(plans, start=1):
            if p.kind == CRASH_NONE:
                parts.append(f"pass {n}: no crash")
            elif p.kind == CRASH_RANDOM:
                parts.append(f"pass {n}: SIGKILL {p.window[0]:g}-{p.window[1]:g} s after its first service call")
            else:
                unit = "service call" if p.kind == CRASH_DURING_CALL else "sink commit"
                parts.append(f"pass {n}: SIGKILL {'during' if p.kind == CRASH_DURING_CALL else 'right after'} "
                             f"{unit} #{p.at}")
        parts.append(f"pass {len(plans) + 1}: final resume")
        if self.flow == "backfill":
            parts.append(f"pass {len(plans) + 2}: backfill (config.backfill, the service healthy again)")
        if self.between == FORGET_CHECKPOINT:
            parts.append("before every resume pass the state folder (the checkpoint) is deleted")
        return "; ".join(parts)

    @property
    def pass_count(self) -> int:
        """How many passes the scenario runs when nothing goes wrong."""
        return 3 if self.flow == "bad_input" else len(self.crashes) + (2 if self.flow == "backfill" else 1)


EXTRA_POINTS = {"idle resume": 1.0, "duplicates folded": 1.0, "degraded path": 1.0,
                "unified error": 1.0, "earlier state untouched": 1.0, "backfill": 2.0, "breaker in outage": 1.0,
                "stuck calls freed": 1.0}
EXTRA_POINTS["checkpoint rebuilt"] = 1.0  # the recovery order of layers (issue 10, item 6)


def with_overrides(sc: Scenario, **changes: Any) -> Scenario:
    return replace(sc, **changes)
