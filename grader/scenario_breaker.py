"""The scenario checks of the circuit breaker (熔断) and the per-call deadline, read from the ledger alone.

* ``breaker in outage``: during a planned outage the service refuses every call (``call_fail`` with
  error ``unreachable``). A processor with a breaker shared by the batch stops calling after
  ``breaker_failures`` consecutive failures and then sends one probe per cool-down; one without a
  breaker lets every document burn its retry budget against the dead service. The bound per pass is
  twice what a breaker allows at most: the failures that open it, the calls already in flight when it
  opened (``concurrency``) and one probe per cool-down of the outage (plus one).
* ``stuck calls freed``: every document with a stuck call (it never returns by itself) was cancelled
  by the processor's deadline (``call_fail`` with error ``cancelled``) and ended committed.

:func:`breaker_gate` says when the planned outage or stuck calls never happened (the scenario proves
nothing then), and :func:`stuck_hint` adds the rule to a pass that hung on stuck calls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from batchlab.contract import BatchConfig
from batchlab.faults import CANCELLED_KIND, OUTAGE_KIND
from batchlab.ledger import Ev

from .analysis import some
from .scenario_running import ScenarioRun


def outage_call_bound(config: BatchConfig, outages: tuple[tuple[float, float], ...]) -> int:
    """The most refused calls per pass a processor with a batch-wide breaker makes in these outages, doubled."""
    cooldown = config.breaker_cooldown
    probes = sum(math.ceil(duration / cooldown) + 1 for _start, duration in outages)
    return 2 * (config.breaker_failures + config.concurrency + probes)


def _refused_by_pass(run: ScenarioRun) -> Counter[int]:
    return Counter(int(e["pass"]) for e in run.events
                   if e["ev"] == Ev.CALL_FAIL and e.get("error") == OUTAGE_KIND)


def _breaker_in_outage(run: ScenarioRun) -> tuple[bool, str]:
    sc = run.scenario
    bound = outage_call_bound(sc.config, sc.plan.outages)
    refused = _refused_by_pass(run)
    windows = ", ".join(f"{d:g} s from {s:g} s" for s, d in sc.plan.outages)
    why = (f"bound {bound} per pass = 2 x (breaker_failures {sc.config.breaker_failures} + concurrency "
           f"{sc.config.concurrency} in flight + one probe per {sc.config.breaker_cooldown:g} s cool-down of the "
           f"outage ({windows}), plus one)")
    over = {p: n for p, n in sorted(refused.items()) if n > bound}
    figures = ", ".join(f"pass {p}: {n}" for p, n in sorted(refused.items())) or "none"
    if over:
        return False, (f"breaker-in-outage: calls to the unreachable service: {figures}; {why}. "
                       "熔断（circuit breaker）：服务不可达时，整批共用一个断路器，连续失败 breaker_failures 次后打开"
                       "（open），打开期间不再调用服务、文档等待冷却（cooldown）而不消耗重试次数；冷却后半开"
                       "（half-open）只放一个探测调用（probe），成功才关闭（closed）。")
    return True, f"breaker in outage: calls to the unreachable service: {figures}; {why}"


def _stuck_docs(run: ScenarioRun) -> list[str]:
    return sorted({str(e["doc_id"]) for e in run.events
                   if e["ev"] == Ev.CALL_FAIL and e.get("error") == CANCELLED_KIND})


def _stuck_calls_freed(run: ScenarioRun) -> tuple[bool, str]:
    planned = sorted(run.scenario.plan.stuck_ids)
    cancelled = _stuck_docs(run)
    missing = [d for d in planned if d not in cancelled]
    uncommitted = sorted(set(cancelled) & {str(d) for d in run.metrics.missing})
    if missing or uncommitted:
        return False, (f"stuck calls freed: stuck documents {some(planned) or some(cancelled)}: "
                       + (f"no cancelled call of {some(missing)}; " if missing else "")
                       + (f"not committed: {some(uncommitted)}" if uncommitted else ""))
    return True, (f"stuck calls freed: the stuck calls of {some(cancelled, 6)} were cancelled at "
                  f"call_timeout {run.scenario.config.call_timeout:g} s and retried; every one committed")


BREAKER_CHECKS: dict[str, Callable[[ScenarioRun], tuple[bool, str]]] = {
    "breaker in outage": _breaker_in_outage,
    "stuck calls freed": _stuck_calls_freed,
}


def breaker_gate(run: ScenarioRun) -> str | None:
    """Why a scenario with an outage or stuck calls proves nothing: the fault never happened."""
    plan = run.scenario.plan
    if plan.outages and not any(e["ev"] == Ev.OUTAGE and e.get("state") == "down" for e in run.events):
        return "the planned outage never happened (no `outage` event: the pass ended before it began)"
    if (plan.stuck_ids or plan.stuck_rate) and not _stuck_docs(run):
        return "the planned stuck calls never fired (no cancelled call in the ledger)"
    return None


def stuck_hint(run: ScenarioRun) -> str:
    """The rule a pass broke when it hung on stuck calls (empty when the scenario has none)."""
    plan = run.scenario.plan
    if not (plan.stuck_ids or plan.stuck_rate):
        return ""
    named = f"documents whose first call hangs: {some(sorted(plan.stuck_ids), 6)}. " if plan.stuck_ids else ""
    return ("\ncall-deadline: " + named + "每次服务调用都要有截止时间（deadline）：async with "
            "asyncio.timeout(config.call_timeout)；超时就取消（cancel）这次调用并按暂时性错误重试，"
            "否则一个卡住的调用永远占着并发槽（concurrency slot），整批停在最后几个文档（长尾饥饿）。")
