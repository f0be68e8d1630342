"""Step 04 (concurrency), the per-call deadline (长尾任务的饥饿与抢占): a stuck call is cancelled and retried.

``process_document`` through ``run_bounded(limit=1)``: the first two documents' first call of every chunk
never returns by itself (the harness's stuck calls); two ordinary documents wait behind them for the one
slot. With ``asyncio.timeout(config.call_timeout)`` around each call, the stuck call is cancelled (the
ledger records it ``cancelled``), retried, and every document ends ``full``. Without it the batch stalls
at its first document; the probe stops it after a few seconds and says so.
"""

from __future__ import annotations

from typing import Any

import pytest
from batchlab.faults import CANCELLED_KIND

from grader.analysis import some
from grader.minirun import short_docs, step_probe
from grader.results import GraderError
from grader.tasks import Context, task

pytestmark = pytest.mark.step("concurrency")

STUCK = ("stuck-0", "stuck-1")
DEADLINE_CONFIG = {"concurrency": 1, "call_timeout": 0.2, "max_attempts": 4, "base_delay": 0.001,
                   "max_delay": 0.01, "jitter": 0.001}
GUARD_S = 6.0


@task("concurrency:deadline")
def deadline_facts(ctx: Context) -> Any:
    return step_probe(ctx, "deadline", "deadline", {"documents": short_docs("stuck", 2) + short_docs("plain", 2),
                                                    "plan": {"seed": 7, "stuck_ids": list(STUCK)},
                                                    "latency": {"median_ms": 1.0}, "guard": 12,
                                                    "config": DEADLINE_CONFIG, "guard_s": GUARD_S}, timeout_s=40)


@pytest.mark.points(2)
@pytest.mark.task("concurrency:deadline")
def test_stuck_call_is_cancelled_and_retried(grade: Any) -> None:
    """A call that never returns is cancelled at config.call_timeout and retried, so the documents behind it run"""
    verdict, events = grade.facts()
    what = ("run_bounded(limit=1) over process_document, BatchConfig(call_timeout=0.2); the first call of "
            f"{', '.join(STUCK)} hangs until cancelled")
    if verdict.is_grader_error:
        raise GraderError(verdict.failure(what))
    if not verdict.ok:
        grade.fail(verdict.failure(what))
    data = verdict.data
    results = data["results"]
    if data["stalled"]:
        grade.fail(f"call-deadline: {what}: after {GUARD_S:g} s only {len(results)} of 4 documents had finished "
                   f"({some(sorted(results)) or 'none'}); the stuck call of {STUCK[0]} held the only slot forever. "
                   "每次服务调用都要有截止时间（deadline）：async with asyncio.timeout(config.call_timeout): await "
                   "service.embed(...)；超时（TimeoutError）当作暂时性错误（TransientServiceError）重试，"
                   "卡住的调用就不会永远占着并发槽（concurrency slot）。")
    cancelled = sorted({e["doc_id"] for e in events if e["ev"] == "call_fail" and e.get("error") == CANCELLED_KIND})
    problems = []
    if set(cancelled) != set(STUCK):
        problems.append(f"the ledger shows cancelled calls of {cancelled or 'no document'}, expected {list(STUCK)}")
    wrong = [f"{doc}: {row.get('mode')} ({row.get('error')})" for doc, row in sorted(results.items())
             if row.get("mode") != "full" or not row.get("matches")]
    if wrong or len(results) != 4:
        problems.append("a cancelled call is a transient failure: retried, the document still ends full; got "
                        + (some(wrong) if wrong else f"{len(results)} of 4 documents"))
    if problems:
        grade.fail(f"call-deadline: {what}: " + "; ".join(problems))
    grade.note(f"stuck calls of {', '.join(cancelled)} cancelled at 0.2 s and retried; 4 documents full")
