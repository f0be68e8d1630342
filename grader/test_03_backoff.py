"""Step 03 (backoff): exponential backoff with bounded jitter and a cap; a retry budget; transient errors only.

Only step 03's own code is called, so that this check passes as soon as step 03
is written (``process_document`` and the batch come later): ``backoff_delay`` with
a fixed ``rand``, and ``make_retrying`` driving calls that fail as planned, with
an injected ``sleep`` that records each delay instead of waiting (no real time is
spent). Degradation is step 04's (``process_document``).
"""

from __future__ import annotations

from typing import Any

import pytest

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
    if any(abs(g - w) > EPS for g, w in zip(got, want, strict=False)):
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


SCHEDULE_CONFIG = {"max_attempts": 4, "base_delay": 0.05, "max_delay": 1.0, "jitter": 0.01}
BUDGET_CONFIG = {"max_attempts": 3, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001}
GUARD = 12

#: make_retrying cases: 0-5 fail twice (timeout) then succeed; 6 always times out; 7 fails permanently.
RETRY_CASES: list[dict[str, Any]] = (
    [{"config": SCHEDULE_CONFIG, "failures": 2, "error": "transient", "guard": GUARD} for _ in range(6)]
    + [{"config": BUDGET_CONFIG, "failures": 1000, "error": "transient", "guard": GUARD}]
    + [{"config": SCHEDULE_CONFIG, "failures": 1000, "error": "permanent", "guard": GUARD}]
)


@task("backoff:retrying")
def retrying_facts(ctx: Context) -> Any:
    return ctx.probe("retrying", {"cases": RETRY_CASES}, workdir="retrying")


def _retrying(grade: Any) -> list[dict[str, Any]]:
    verdict = grade.facts("backoff:retrying")
    if verdict.is_grader_error:
        raise GraderError(verdict.failure("make_retrying"))
    if not verdict.ok:
        grade.fail(verdict.failure("make_retrying(config, sleep=..., before_sleep=...)"))
    rows: list[dict[str, Any]] = verdict.data
    return rows


def _outcome(case: dict[str, Any]) -> str:
    if "raised" in case:
        return f"raised {case['raised']}" + (f" ({case['kind']})" if case.get("kind") else "")
    return f"returned {case['result']!r}"


@pytest.mark.points(2)
@pytest.mark.task("backoff:retrying")
def test_retries_wait_with_backoff(grade: Any) -> None:
    """make_retrying waits base_delay, then 2 * base_delay, with jitter, through the injected sleep"""
    cases = _retrying(grade)[0:6]
    how = ("6 calls whose first 2 attempts time out (TransientServiceError), each with a fresh "
           "make_retrying(BatchConfig(max_attempts=4, base_delay=0.05, jitter=0.01), sleep=..., before_sleep=...)")
    problems = []
    bad = [c for c in cases if c.get("result") != "ok" or c["calls"] != 3]
    if bad:
        problems.append(f"expected 3 calls each and the result 'ok'; got {bad[0]['calls']} calls and "
                        f"{_outcome(bad[0])}")
    sleeps = [d for c in cases for d in c["sleeps"] if d > 0]
    retries = sum(max(0, c["calls"] - 1) for c in cases)
    first = [c["sleeps"][0] for c in cases if len(c["sleeps"]) >= 1]
    second = [c["sleeps"][1] for c in cases if len(c["sleeps"]) >= 2]
    if len(sleeps) < retries:
        problems.append(f"{retries} retries but only {len(sleeps)} waits through the injected sleep "
                        f"(waits: {[round(d, 4) for c in cases for d in c['sleeps']][:8]}): retrying at once, or "
                        "sleeping with time.sleep/asyncio.sleep instead of the `sleep` argument")
    elif not all(0.05 - EPS <= d <= 0.06 + EPS for d in first) or not all(0.10 - EPS <= d <= 0.11 + EPS
                                                                           for d in second):
        problems.append(f"waits {[[round(d, 4) for d in c['sleeps']] for c in cases]}: expected each call to "
                        "wait within [0.05, 0.06] after its first failure and within [0.10, 0.11] after its second")
    elif len({round(d, 9) for d in first}) < 2:
        problems.append(f"the 6 first waits are all {first[0]:.4f} s: no jitter")
    not_told = [c for c in cases if c["before_sleep"] != len(c["sleeps"])]
    if not_told:
        problems.append(f"before_sleep was called {not_told[0]['before_sleep']} times for "
                        f"{len(not_told[0]['sleeps'])} waits: pass it on to tenacity (before_sleep=before_sleep), "
                        "it is how process_document counts its retries")
    if problems:
        grade.fail(f"retry schedule ({how}): " + "; ".join(problems))
    grade.note(f"6 calls, 12 retries, waits {sorted(round(d, 4) for d in sleeps)}")


@pytest.mark.points(2)
@pytest.mark.task("backoff:retrying")
def test_max_attempts_is_honoured(grade: Any) -> None:
    """A call that keeps failing transiently is tried exactly max_attempts times, then its last error is raised"""
    case = _retrying(grade)[6]
    limit = BUDGET_CONFIG["max_attempts"]
    what = f"retry budget: a call that always times out, max_attempts={limit}"
    if case["calls"] > limit:
        grade.fail(f"{what}: it was called {case['calls']} times"
                   + (f"; the grader stopped it after {GUARD} calls (unlimited retries): "
                      "stop=stop_after_attempt(config.max_attempts)" if case["calls"] > GUARD else ""))
    if case["calls"] < limit:
        grade.fail(f"{what}: it was called only {case['calls']} time(s); transient errors must be retried up to "
                   f"max_attempts={limit} times (the first call included)")
    if case.get("raised") != "TransientServiceError":
        grade.fail(f"{what}: after {limit} attempts make_retrying {_outcome(case)}; it must re-raise the last "
                   "TransientServiceError itself (reraise=True), so that process_document can tell "
                   "'retries exhausted' from a bug")
    grade.note(f"called exactly {case['calls']} times (max_attempts {limit}), then the last timeout was raised")


@pytest.mark.points(2)
@pytest.mark.task("backoff:retrying")
def test_permanent_errors_are_not_retried(grade: Any) -> None:
    """A permanent error (parse failure) is raised at once: retrying it cannot help"""
    case = _retrying(grade)[7]
    if case["calls"] > 1 or case["sleeps"]:
        grade.fail(f"retry only transient errors: a call failing with PermanentServiceError (parse_error) was "
                   f"called {min(case['calls'], GUARD)} times with {len(case['sleeps'])} waits"
                   + (f" (the grader stopped it after {GUARD} calls)" if case["calls"] > GUARD else "")
                   + "; retry=retry_if_exception_type(TransientServiceError)")
    if case.get("raised") != "PermanentServiceError":
        grade.fail(f"a permanent error must come out of make_retrying as it is; it {_outcome(case)}")
    grade.note("a PermanentServiceError was raised after 1 call, no wait")
