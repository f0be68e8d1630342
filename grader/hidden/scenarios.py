"""Hidden scenarios: other seeds and crash points of the public ones, run at grading (``--hidden``).

Left out of the student distribution by ``batchlab release --out`` (any path part
named ``hidden``). ``grader.scenarios.HIDDEN_SCENARIO_COUNT`` must equal
``len(HIDDEN_SCENARIOS)`` (a kit test checks it).
"""

from __future__ import annotations

from batchlab.contract import BatchConfig
from batchlab.faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CRASH_RANDOM, FaultPlan
from batchlab.service import LatencyModel

from grader.scenarios import FORGET_CHECKPOINT, Crash, Scenario, register_scenarios

HIDDEN_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("hidden_first_commit", "a SIGKILL right after the very first commit", "example", 101,
             FaultPlan(seed=101, transient_rate=0.02), (Crash(CRASH_AFTER_COMMIT, at=1),), hidden=True),
    Scenario("hidden_late_call", "5 % faults and a SIGKILL late in the run (90 % of the calls)", "example", 103,
             FaultPlan(seed=103, transient_rate=0.05, poison_ids=("doc-00064",)), (Crash(CRASH_DURING_CALL, at_fraction=0.9),), hidden=True),
    # Slower calls (5 ms) keep work in flight for both kills even though the whales fill all 3 slots at first.
    Scenario("hidden_random_kills", "two random SIGKILLs at concurrency 3", "whales", 107,
             FaultPlan(seed=107, transient_rate=0.03, poison_ids=("doc-00021",)), (Crash(CRASH_RANDOM, window=(0.05, 0.3)),) * 2,
             config=BatchConfig(concurrency=3), latency=LatencyModel(median_ms=5.0, sigma=0.4), hidden=True),
    Scenario("hidden_permanent_rate", "3 % permanent and 4 % transient faults at concurrency 2", "invalid_mix", 109,
             FaultPlan(seed=109, transient_rate=0.04, permanent_rate=0.03), (Crash(CRASH_AFTER_COMMIT, at=60),),
             config=BatchConfig(concurrency=2), hidden=True),
    Scenario("hidden_backfill_rate", "4 % permanent faults and a kill after a commit, then a backfill pass",
             "invalid_mix", 113, FaultPlan(seed=113, transient_rate=0.02, permanent_rate=0.04),
             (Crash(CRASH_AFTER_COMMIT, at=50),), extra=("backfill",), flow="backfill", hidden=True),
    # The checkpoint deleted before each of two resumes, the first after a kill right after a commit.
    Scenario("hidden_checkpoint_lost_twice", "the checkpoint deleted before both resumes of two SIGKILLs",
             "duplicates", 113, FaultPlan(seed=113, transient_rate=0.03),
             (Crash(CRASH_AFTER_COMMIT, at=30), Crash(CRASH_DURING_CALL, at_fraction=0.7)),
             extra=("checkpoint rebuilt",), between=FORGET_CHECKPOINT, hidden=True),
    # An outage that a SIGKILL interrupts: the resumed pass meets the outage again from its own start.
    Scenario("hidden_outage_resume", "a 0.8 s outage at concurrency 4, a SIGKILL during it, then the resume",
             "example", 131, FaultPlan(seed=131, transient_rate=0.01, outages=((0.05, 0.8),)),
             (Crash(CRASH_DURING_CALL, at_fraction=0.2),), config=BatchConfig(concurrency=4),
             extra=("breaker in outage",), hidden=True),
    Scenario("hidden_stuck_rate", "0.5 % of the calls hang until cancelled, at concurrency 3", "example", 127,
             FaultPlan(seed=127, transient_rate=0.01, stuck_rate=0.005), (Crash(),),
             config=BatchConfig(concurrency=3, call_timeout=0.2), timeout_s=40.0, extra=("stuck calls freed",),
             hidden=True),
)

register_scenarios(HIDDEN_SCENARIOS)
