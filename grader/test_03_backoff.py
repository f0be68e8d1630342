"""Step 03 (backoff): exponential backoff with bounded jitter and a cap; a retry budget; degradation.

``backoff_delay`` is called directly (in a probe child) with a fixed ``rand``.
The retry behaviour is observed through ``process_documents_batch`` with an
injected ``sleep`` that records each delay instead of waiting (no real time is
spent), and with the ledger's count of calls per chunk.
"""

from __future__ import annotations

from typing import Any

import pytest

from batchlab.pipeline import output_matches
from batchlab.documents import parse_document
from grader.minirun import MiniRun, mini_run, short_docs
from grader.results import GraderError
from grader.tasks import Context, task

pytestmark = pytest.mark.step("backoff")

EPS = 1e-6
EXP = {"base_delay": 0.1, "max_delay": 100.0, "jitter": 0.0}
CAP = {"base_delay": 0.1, "max_delay": 1.0, "jitter": 0.0}
JIT = {"base_delay": 0.1, "max_delay": 10.0, "jitter": 0.05}
JIT_CAP = {"base_delay": 0.1, "max_delay": 1.0, "jitter": 0.05}

CASES: list[dict[str, Any]] = (
    [{"config": EXP, "attempt": a, "rand": 0.0} for a in range(6)]                      # 0-5
    + [{"config": CAP, "attempt": a, "rand": 0.0} for a in (4, 10, 30, 60)]             # 6-9
    + [{"config": JIT, "attempt": 1, "rand": 0.999999}, {"config": JIT, "attempt": 1, "rand": 0.5}]  # 10-11
    + [{"config": JIT, "attempt": 1} for _ in range(20)]                                 # 12-31
    + [{"config": JIT_CAP, "attempt": 30} for _ in range(5)]                             # 32-36
)


@task("backoff:values")
def backoff_values(ctx: Context) -> Any:
    return ctx.probe("backoff", {"cases": CASES}, workdir="backoff")


@pytest.mark.points(2)
@pytest.mark.task("backoff:values")
def test_backoff_grows_exponentially(grade: Any) -> None:
    """Without jitter, the wait after failure n is base_delay * 2**n"""
    values = grade.verdict("backoff_delay")
    got = values[0:6]
    want = [0.1 * 2**a for a in range(6)]
    if any(abs(g - w) > EPS for g, w in zip(got, want)):
        grade.fail(f"exponential backoff: with base_delay 0.1, jitter 0, attempts 0-5 gave "
                   f"{[round(g, 4) for g in got]}, expected {want}")
    grade.note(f"attempts 0-5 wait {[round(g, 3) for g in got]} s")


@pytest.mark.points(2)
@pytest.mark.task("backoff:values")
def test_backoff_jitter_is_bounded_and_present(grade: Any) -> None:
    """Jitter adds between 0 and config.jitter, and it varies from call to call"""
    values = grade.verdict("backoff_delay")
    problems = []
    nominal = 0.2
    for index, rand in ((10, 0.999999), (11, 0.5)):
        v = values[index]
        if not nominal - EPS <= v <= nominal + JIT["jitter"] + EPS:
            problems.append(f"attempt 1 with rand() = {rand} waited {v:.4f} s, outside "
                            f"[{nominal}, {nominal + JIT['jitter']}]")
    free = values[12:32]
    outside = [round(v, 4) for v in free if not nominal - EPS <= v <= nominal + JIT["jitter"] + EPS]
    if outside:
        problems.append(f"with the default random source some waits fall outside [0.2, 0.25]: {outside[:5]}")
    if len({round(v, 9) for v in free}) < 2:
        problems.append(f"20 calls for attempt 1 all waited exactly {free[0]:.4f} s: no jitter, so clients that "
                        "failed together retry together (thundering herd)")
    if problems:
        grade.fail("jitter (base_delay 0.1, jitter 0.05): " + "; ".join(problems))
    grade.note(f"attempt 1 waits between {min(free):.4f} and {max(free):.4f} s (bound 0.2-0.25)")


@pytest.mark.points(2)
@pytest.mark.task("backoff:values")
def test_backoff_is_capped(grade: Any) -> None:
    """The exponential part never exceeds max_delay, however many failures"""
    values = grade.verdict("backoff_delay")
    capped = values[6:10]
    problems = []
    if any(abs(v - 1.0) > EPS for v in capped):
        problems.append(f"max_delay 1.0, jitter 0: attempts 4, 10, 30, 60 waited {[round(v, 4) for v in capped]}, "
                        "expected 1.0 each")
    with_jitter = values[32:37]
    if any(not 1.0 - EPS <= v <= 1.05 + EPS for v in with_jitter):
        problems.append(f"max_delay 1.0, jitter 0.05: attempt 30 waited {[round(v, 4) for v in with_jitter]}, "
                        "expected within [1.0, 1.05]")
    if problems:
        grade.fail("cap: " + "; ".join(problems))
    grade.note("capped at max_delay (plus jitter)")


SCHEDULE_CONFIG = {"max_attempts": 4, "base_delay": 0.05, "max_delay": 1.0, "jitter": 0.01, "concurrency": 2}


@task("backoff:schedule")
def schedule_facts(ctx: Context) -> MiniRun:
    docs = short_docs("retry", 6)
    plan = {"seed": 3, "fail_first_ids": {d["id"]: 2 for d in docs}}
    return mini_run(ctx, "schedule", docs, [{"plan": plan, "config": SCHEDULE_CONFIG, "latency": {"median_ms": 0},
                                             "record_sleep": True, "guard": 12}])


@pytest.mark.points(2)
@pytest.mark.task("backoff:schedule")
def test_retries_wait_with_backoff(grade: Any) -> None:
    """Retries through process_documents_batch wait base_delay, then 2 * base_delay, with jitter, via the injected sleep"""
    run: MiniRun = grade.facts()
    verdict = run.verdicts[0]
    if not verdict.ok:
        if verdict.is_grader_error:
            raise GraderError(verdict.failure("retry schedule"))
        grade.fail(verdict.failure("retries in process_documents_batch"))
    sleeps = [d for d in verdict.data["sleeps"] if d > 0]
    retries = sum(1 for e in run.calls() if e["attempt"] > 1)
    how = ("6 one-chunk documents whose first 2 calls fail (timeout/503); max_attempts 4, base_delay 0.05, "
           "jitter 0.01")
    first = [d for d in sleeps if 0.05 - EPS <= d <= 0.06 + EPS]
    second = [d for d in sleeps if 0.10 - EPS <= d <= 0.11 + EPS]
    problems = []
    if retries < 12:
        problems.append(f"only {retries} retries were made (expected 12)")
    if len(sleeps) < retries:
        problems.append(f"{retries} retries but only {len(sleeps)} waits through the injected sleep "
                        f"(waits: {[round(d, 4) for d in verdict.data['sleeps'][:8]]}): retrying at once, or "
                        "sleeping with time.sleep/asyncio.sleep instead of the `sleep` argument")
    elif len(first) < 6 or len(second) < 6:
        problems.append(f"waits {sorted(round(d, 4) for d in sleeps)[:14]}: expected 6 in [0.05, 0.06] "
                        "(after the first failure) and 6 in [0.10, 0.11] (after the second)")
    elif len({round(d, 9) for d in first}) < 2:
        problems.append(f"the 6 first waits are all {first[0]:.4f} s: no jitter")
    not_full = [rec.doc_id for rec in run.outputs.values() if rec.mode != "full"]
    if len(run.outputs) < 6 or not_full:
        problems.append(f"after 2 transient failures each document must be committed in full mode "
                        f"(committed: {len(run.outputs)}, not full: {not_full[:3]})")
    if problems:
        grade.fail(f"retry schedule ({how}): " + "; ".join(problems))
    grade.note(f"12 retries, waits {sorted(round(d, 4) for d in sleeps)}")


BUDGET_CONFIG = {"max_attempts": 3, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001, "concurrency": 4}
GUARD = 12


@task("backoff:budget")
def budget_facts(ctx: Context) -> MiniRun:
    docs = short_docs("budget", 5)
    plan = {"seed": 5, "fail_first_ids": {"budget-0": 1000}, "permanent_ids": ["budget-1"]}
    return mini_run(ctx, "budget", docs, [{"plan": plan, "config": BUDGET_CONFIG, "latency": {"median_ms": 0},
                                           "record_sleep": True, "guard": GUARD}])


def _budget_run(grade: Any) -> MiniRun:
    run: MiniRun = grade.facts()
    verdict = run.verdicts[0]
    if not verdict.ok:
        if verdict.is_grader_error:
            raise GraderError(verdict.failure("retry budget"))
        grade.fail(verdict.failure("retry budget in process_documents_batch"))
    return run


@pytest.mark.points(2)
@pytest.mark.task("backoff:budget")
def test_max_attempts_is_honoured(grade: Any) -> None:
    """A call that keeps failing transiently is tried exactly max_attempts times, never without end"""
    run = _budget_run(grade)
    calls = [e for e in run.calls() if e["doc_id"] == "budget-0" and e["chunk"] == 0]
    guard_hit = any(e["ev"] == "call_start" and e["doc_id"] == "budget-0" and e["attempt"] >= GUARD
                    for e in run.events) or run.verdicts[0].data.get("guard_trips", 0) > 0
    if len(calls) > BUDGET_CONFIG["max_attempts"]:
        grade.fail(f"retry budget: budget-0 chunk 0 (every call times out) was called {len(calls)} times with "
                   f"max_attempts={BUDGET_CONFIG['max_attempts']}"
                   + (f"; the grader stopped it after {GUARD} calls (unlimited retries)" if guard_hit else ""))
    if len(calls) < BUDGET_CONFIG["max_attempts"]:
        grade.fail(f"retry budget: budget-0 chunk 0 (transient timeouts) was called only {len(calls)} time(s); "
                   f"transient errors must be retried up to max_attempts={BUDGET_CONFIG['max_attempts']} times")
    grade.note(f"budget-0 called exactly {len(calls)} times (max_attempts {BUDGET_CONFIG['max_attempts']})")


@pytest.mark.points(2)
@pytest.mark.task("backoff:budget")
def test_degrades_instead_of_blocking(grade: Any) -> None:
    """Exhausted retries and permanent errors take the degraded path; permanent errors are not retried"""
    run = _budget_run(grade)
    by_doc = run.outputs_by_doc()
    docs = {d["id"]: parse_document(d) for d in run.documents}
    problems = []
    for doc_id, why in (("budget-0", "retries exhausted"), ("budget-1", "permanent error")):
        rec = by_doc.get(doc_id)
        if rec is None:
            problems.append(f"{doc_id} ({why}) was never committed: the batch must converge through the degraded "
                            "path (clean + fixed_chunks + local_embed, mode='degraded')")
        elif rec.mode != "degraded" or not output_matches(docs[doc_id], rec.mode, rec.chunks, rec.vectors):
            problems.append(f"{doc_id} ({why}) was committed in mode {rec.mode!r} with output that is not the "
                            "degraded pipeline's (batchlab.pipeline.degraded_chunks)")
    permanent_calls = [e for e in run.calls() if e["doc_id"] == "budget-1"]
    if len(permanent_calls) > 1:
        problems.append(f"budget-1 fails permanently (parse error) yet was called {len(permanent_calls)} times: "
                        "retry transient errors only")
    for doc_id in ("budget-2", "budget-3", "budget-4"):
        rec = by_doc.get(doc_id)
        if rec is None or rec.mode != "full":
            problems.append(f"{doc_id} (no fault) is {'missing' if rec is None else 'committed ' + rec.mode}")
    if problems:
        grade.fail("degradation: " + "; ".join(problems))
    grade.note("exhausted and permanent documents committed degraded, healthy ones full")
