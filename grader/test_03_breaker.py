"""Step 03 (backoff), the circuit breaker (熔断): opens after N consecutive failures, fails fast while open,
lets exactly one probe through when half-open, closes on its success and opens again on its failure.

Only the breaker itself is called (``CircuitBreaker(config, clock=...)`` and ``await breaker.call(fn)``),
driven by a fixed script with an injected clock, so that no real time passes: see
:mod:`grader.probe_breaker` for the script. Settings: ``breaker_failures=3``, ``breaker_cooldown=10``.
"""

from __future__ import annotations

from typing import Any

import pytest

from grader.tasks import Context, task

pytestmark = pytest.mark.step("backoff")

EPS = 1e-6
HOW = "CircuitBreaker(BatchConfig(breaker_failures=3, breaker_cooldown=10), clock=fake clock)"


@task("backoff:breaker")
def breaker_facts(ctx: Context) -> Any:
    return ctx.probe("breaker", {}, workdir="breaker")


def _records(grade: Any) -> dict[str, dict[str, Any]]:
    rows: list[dict[str, Any]] = grade.verdict(f"{HOW}; await breaker.call(fn)")
    return {row["step"]: row for row in rows}


def _said(row: dict[str, Any]) -> str:
    what = row.get("outcome", "?")
    if what == "refused":
        what = f"refused with {row.get('error_type')}"
    return f"{row['step']}: {'called fn' if row.get('called') else 'did not call fn'}, {what}, state {row['state']!r}"


@pytest.mark.points(2)
@pytest.mark.task("backoff:breaker")
def test_breaker_opens_after_consecutive_failures(grade: Any) -> None:
    """A new breaker is closed; it opens on the 3rd consecutive transient failure, a success or a permanent error resets the count"""
    r = _records(grade)
    steps = ("c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8")
    problems = []
    if r["new"]["state"] != "closed":
        problems.append(f"a new breaker is {r['new']['state']!r}, expected 'closed'")
    early = [_said(r[s]) for s in steps if r[s]["state"] != "closed" or not r[s]["called"]]
    if early:
        problems.append("it opened too early (failures must be consecutive: a success resets the count, and a "
                        "PermanentServiceError is an answer from a live service, not a failure of it): "
                        + "; ".join(early[:3]))
    if r["opening"]["state"] != "open":
        problems.append(f"after 3 consecutive TransientServiceErrors it is {r['opening']['state']!r}, expected 'open'")
    if problems:
        grade.fail(f"breaker-opens-after-n ({HOW}; calls: fail, fail, ok, fail, fail, permanent, fail, fail, fail): "
                   + "; ".join(problems))
    grade.note("closed through 2 failures, a success and a permanent error; open on the 3rd consecutive failure")


@pytest.mark.points(2)
@pytest.mark.task("backoff:breaker")
def test_breaker_fails_fast_while_open(grade: Any) -> None:
    """While open, a call is refused at once (CircuitOpenError with retry_after) and the service is not called"""
    r = _records(grade)
    problems = []
    for step, left in (("open_1", 10.0), ("open_2", 6.0)):
        row = r[step]
        if row.get("called"):
            problems.append(f"{_said(row)}: an open breaker must not call the service (fail fast)")
        elif row.get("outcome") != "refused":
            problems.append(f"{_said(row)}")
        elif row.get("retry_after") is None or abs(row["retry_after"] - left) > 0.01:
            problems.append(f"{step} ({10 - left:g} s into the cool-down) raised {row.get('error_type')} with "
                            f"retry_after={row.get('retry_after')!r}, expected {left:g} (the rest of the cool-down)")
        elif row["state"] != "open":
            problems.append(f"{step}: state {row['state']!r} during the cool-down, expected 'open'")
    if problems:
        grade.fail("breaker-fails-fast: " + "; ".join(problems))
    grade.note("refused without a call, retry_after 10 s then 6 s")


@pytest.mark.points(2)
@pytest.mark.task("backoff:breaker")
def test_breaker_half_open_lets_one_probe_through(grade: Any) -> None:
    """After the cool-down it is half-open: one probe call goes through, other calls meanwhile are refused"""
    r = _records(grade)
    problems = []
    if r["cooled"]["state"] != "half_open":
        problems.append(f"10 s after opening the state is {r['cooled']['state']!r}, expected 'half_open'")
    if not r["probe"]["called"]:
        problems.append(f"the first call after the cool-down was not made ({_said(r['probe'])}): it is the probe")
    extra = [_said(r[s]) for s in ("during_probe_1", "during_probe_2") if r[s]["called"]]
    if extra:
        problems.append("while the probe was still running, more calls went through (exactly one probe, or a "
                        "recovering service is hit by the whole batch at once): " + "; ".join(extra))
    if problems:
        grade.fail("breaker-one-probe: " + "; ".join(problems))
    grade.note("half-open: one probe made, 2 calls during it refused")


@pytest.mark.points(1)
@pytest.mark.task("backoff:breaker")
def test_breaker_closes_on_probe_success(grade: Any) -> None:
    """The probe's success closes the breaker: the next call goes through"""
    r = _records(grade)
    bad = [_said(r[s]) for s in ("probe", "after_close", "second_probe")
           if r[s]["state"] != "closed" or r[s].get("outcome") != "ok"]
    if bad:
        grade.fail("breaker-closes-on-success: after a successful probe the breaker must be 'closed' and let "
                   "calls through: " + "; ".join(bad))
    grade.note("closed after the successful probe")


@pytest.mark.points(1)
@pytest.mark.task("backoff:breaker")
def test_breaker_reopens_on_probe_failure(grade: Any) -> None:
    """A failed probe opens the breaker again for a fresh cool-down"""
    r = _records(grade)
    problems = []
    if r["failed_probe"]["state"] != "open":
        problems.append(f"after the probe failed: {_said(r['failed_probe'])}, expected 'open'")
    row = r["after_failed_probe"]
    if row.get("called") or row.get("outcome") != "refused":
        problems.append(f"the call right after the failed probe: {_said(row)}; expected a refusal without a call")
    elif row.get("retry_after") is None or abs(row["retry_after"] - 10.0) > 0.01:
        problems.append(f"retry_after={row.get('retry_after')!r} right after the failed probe, expected 10 "
                        "(a fresh cool-down from the probe's failure)")
    if problems:
        grade.fail("breaker-reopens-on-probe-failure: " + "; ".join(problems))
    grade.note("open again after the failed probe, a fresh 10 s cool-down")
