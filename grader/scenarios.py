"""Acceptance scenarios: seeded two-pass crash-and-resume runs in child processes, and how they are scored.

A :class:`Scenario` is plain data: an input, a fault plan, the crash plans of the
passes before the final resume, a config. :func:`run_scenario` runs it through
the harness runner (real SIGKILLs, per-pass timeouts, resource limits);
:func:`evaluate` scores it from the ledger and the sink alone:

* gates: every pass ran (no exception, no timeout), every planned crash fired,
  every planned fault fired. A failed gate scores the scenario 0, with the reason;
* the lesson's thresholds (completion, duplicate rate, fail rate, resume time,
  from the single threshold file);
* exactly-once (no key committed twice) and the report-agrees-with-ledger check;
* checks proper to the scenario (idle resume, folded duplicates, degraded path,
  unified error ...).

Every failure message starts with the scenario's seed, crash plan and a replay
command (docs/design.md, principle 8).

This module holds the public scenarios (add one to :data:`PUBLIC_SCENARIOS`) and is the grader's one
import of the rest, by role: ``scenario_inputs`` (the seeded inputs), ``scenario_model`` (:class:`Scenario`,
:class:`Crash`, the points), ``scenario_running`` (:func:`run_scenario`) and ``scenario_scoring``
(:func:`evaluate`). Importing it registers the public scenarios' runs as grader tasks.
"""

from __future__ import annotations

from batchlab.contract import BatchConfig
from batchlab.faults import CRASH_AFTER_COMMIT, CRASH_DURING_CALL, CRASH_RANDOM, FaultPlan

from .scenario_inputs import WHALE_IDS
from .scenario_model import FORGET_CHECKPOINT, Crash, Scenario
from .scenario_running import ScenarioRun, register_scenarios, run_scenario
from .scenario_scoring import evaluate

#: What the grader, its hidden scenarios and the kit's tests import from here.
__all__ = [
    "BACKFILL_IDS", "DEGRADED_IDS", "FORGET_CHECKPOINT", "HIDDEN_SCENARIO_COUNT", "POISON_IDS", "PUBLIC_SCENARIOS",
    "STUCK_IDS", "Crash", "Scenario", "ScenarioRun",
    "evaluate", "register_scenarios", "run_scenario",
]

#: How many hidden scenarios exist (they live in ``grader/hidden/``, left out of the student
#: distribution). ``tests/grader`` checks that this figure matches the hidden definitions.
HIDDEN_SCENARIO_COUNT = 8

#: Poison documents (``FaultPlan.poison_ids``): valid documents whose every service call raises
#: ``MalformedResponseError``, a ``ValueError`` and not a service error. A processor that lets one
#: unexpected exception escape stops the whole batch there; a correct one ends the document ``failed``
#: (or ``degraded``) and goes on. One per scenario, so completion stays above 99 % for a correct run.
POISON_IDS = ("doc-00050",)
#: Permanently failing documents of ``permanent_and_invalid``: more than its concurrency (3) in every pass.
DEGRADED_IDS = ("doc-00003", "doc-00008", "doc-00012", "doc-00017", "doc-00025", "doc-00042", "doc-00060",
                "doc-00088", "doc-00101", "doc-00110")

#: Permanently failing documents of ``backfill_degraded`` (degraded until the backfill pass heals the service).
BACKFILL_IDS = ("doc-00005", "doc-00021", "doc-00034", "doc-00067", "doc-00093")
#: Documents of ``stuck_calls`` whose first call of every chunk hangs until the processor cancels it.
STUCK_IDS = ("doc-00001", "doc-00031", "doc-00048", "doc-00055")

PUBLIC_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("clean_run", "a clean run commits every document once; the resume pass finds nothing to do",
             "example", 11, FaultPlan(seed=11), (Crash(),), extra=("idle resume",)),
    Scenario("transient_faults", "3 % transient faults and first-attempt failures are retried to completion",
             "example", 23, FaultPlan(seed=23, transient_rate=0.03, fail_first_rate=0.02, poison_ids=POISON_IDS),
             (Crash(CRASH_DURING_CALL, at_fraction=0.6),)),
    Scenario("crash_during_call", "a SIGKILL during a service call: the resume finishes the batch, nothing twice",
             "example", 31, FaultPlan(seed=31, transient_rate=0.01, poison_ids=("doc-00077",)),
             (Crash(CRASH_DURING_CALL, at_fraction=0.35),)),
    Scenario("crash_after_commit", "a SIGKILL right after a sink commit: the resume trusts the sink, no redo",
             "example", 47, FaultPlan(seed=47, transient_rate=0.01), (Crash(CRASH_AFTER_COMMIT, at=40),)),
    Scenario("random_kills", "three random SIGKILLs in a row, then a final resume",
             "whales", 59, FaultPlan(seed=59, transient_rate=0.02, slow_ids=WHALE_IDS, slow_factor=3.0),
             (Crash(CRASH_RANDOM),) * 3),
    Scenario("duplicates_in_input", "re-sent documents (id case, spacing, Unicode form, metadata) run once",
             "duplicates", 61, FaultPlan(seed=61, transient_rate=0.02), (Crash(CRASH_AFTER_COMMIT, at=25),),
             extra=("duplicates folded",)),
    # More degraded documents in each pass than config.concurrency: a slot that leaks on the degraded path
    # stalls the pass (and the stall watcher says so) instead of passing unnoticed.
    Scenario("permanent_and_invalid", "permanent faults take the degraded path; invalid documents end failed",
             "invalid_mix", 73,
             FaultPlan(seed=73, transient_rate=0.02, permanent_ids=DEGRADED_IDS),
             (Crash(CRASH_DURING_CALL, at_fraction=0.3),), config=BatchConfig(concurrency=3), extra=("degraded path",)),
    # 后续标记待补: permanent faults leave documents degraded (fewer than config.concurrency: a leaky slot is another
    # scenario's business); a backfill pass with the service healthy again upgrades every one, nothing twice.
    Scenario("backfill_degraded", "a backfill pass upgrades every degraded document to full, with no duplicate",
             "example", 79, FaultPlan(seed=79, transient_rate=0.02, permanent_ids=BACKFILL_IDS),
             (Crash(CRASH_DURING_CALL, at_fraction=0.4),), extra=("backfill",), flow="backfill"),
    Scenario("bad_batch_input", "a malformed batch file is refused with the unified error; earlier state intact",
             "small", 83, FaultPlan(seed=83, transient_rate=0.02), (), extra=("unified error", "earlier state untouched"),
             flow="bad_input"),
    # An outage of the external model (熔断): the breaker shared by the batch stops the calls and the documents
    # wait; without one, every document burns its retries against the dead service (bound: scenario_breaker).
    Scenario("outage", "the service is unreachable for 1 s: a circuit breaker stops the calls, documents wait",
             "example", 89, FaultPlan(seed=89, transient_rate=0.01, outages=((0.05, 1.0),)), (Crash(),),
             extra=("breaker in outage",)),
    # Calls that never return by themselves (长尾任务的饥饿): only a per-call deadline frees their slots.
    # 60 s, not 30: a CI run on a loaded 2-core machine saw the reference's pass still committing (117/118) at 29 s.
    Scenario("stuck_calls", "calls that never return are cancelled at their deadline and retried",
             "example", 97, FaultPlan(seed=97, transient_rate=0.01, stuck_ids=STUCK_IDS), (Crash(),),
             config=BatchConfig(call_timeout=0.2), timeout_s=60.0, extra=("stuck calls freed",)),
    Scenario("large_batch", "1000 documents with 2 % faults and a crash mid-run",
             "large", 1000, FaultPlan(seed=1000, transient_rate=0.02, poison_ids=("doc-00480",)),
             (Crash(CRASH_DURING_CALL, at_fraction=0.5),),
             timeout_s=90.0),
    # The recovery order of layers (issue 10, item 6): the sink is the truth, the checkpoint an index rebuilt from it.
    Scenario("checkpoint_lost", "the checkpoint is deleted after a SIGKILL: rebuilt from the sink, nothing redone",
             "example", 89, FaultPlan(seed=89, transient_rate=0.02), (Crash(CRASH_DURING_CALL, at_fraction=0.5),),
             extra=("checkpoint rebuilt",), between=FORGET_CHECKPOINT),
)


register_scenarios(PUBLIC_SCENARIOS)
