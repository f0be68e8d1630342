"""Step 04 (concurrency): documents in parallel up to ``config.concurrency``; the chunks of one document in order.

The harness's service records, with every call, how many calls were in flight
(``inflight``) and how many of them for the same document (``doc_inflight``);
these tests read those figures from the ledger of one in-probe run.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from grader.analysis import some
from grader.minirun import MiniRun, mini_run, short_docs
from grader.results import GraderError
from grader.tasks import Context, task

pytestmark = pytest.mark.step("concurrency")

LIMIT = 4
DOCS = 24


@task("concurrency:run")
def concurrency_facts(ctx: Context) -> MiniRun:
    docs = short_docs("conc", DOCS, sentences=3)
    return mini_run(ctx, "concurrency", docs, [{
        "plan": {"seed": 4, "transient_rate": 0.05},
        "config": {"concurrency": LIMIT, "max_attempts": 6, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001},
        "latency": {"median_ms": 4.0, "sigma": 0.3}, "record_sleep": True, "guard": 20}])


def _run(grade: Any) -> MiniRun:
    run: MiniRun = grade.facts()
    verdict = run.verdicts[0]
    if verdict.is_grader_error:
        raise GraderError(verdict.failure("concurrency run"))
    if not verdict.ok:
        grade.fail(verdict.failure(f"process_documents_batch on {DOCS} documents, concurrency {LIMIT}"))
    if not run.calls():
        grade.fail("process_documents_batch made no service call")
    return run


def documents_in_flight(events: list[dict[str, Any]]) -> tuple[int, dict[str, Any] | None]:
    """The most documents with a service call in flight at once (and the call that reached it).

    Counted in documents, not calls: the limit is on documents; chunk order is a separate test.
    """
    active: dict[str, int] = defaultdict(int)
    owner: dict[tuple[int, int], str] = {}
    peak, where = 0, None
    for e in events:
        if e["ev"] == "call_start":
            owner[(e["pass"], e["call"])] = e["doc_id"]
            active[e["doc_id"]] += 1
            docs = sum(1 for n in active.values() if n > 0)
            if docs > peak:
                peak, where = docs, e
        elif e["ev"] in ("call_ok", "call_fail"):
            doc = owner.pop((e["pass"], e["call"]), None)
            if doc is not None:
                active[doc] -= 1
    return peak, where


@pytest.mark.points(3)
@pytest.mark.task("concurrency:run")
def test_concurrency_limit_is_respected(grade: Any) -> None:
    """Never more than config.concurrency documents in flight at once"""
    run = _run(grade)
    peak, at = documents_in_flight(run.events)
    if peak > LIMIT and at is not None:
        grade.fail(f"concurrency: {peak} documents had service calls in flight at once > config.concurrency "
                   f"{LIMIT} (first at call #{at['call']}, {at['doc_id']}): bound the documents in flight with "
                   "an asyncio.Semaphore(config.concurrency)")
    grade.note(f"peak {peak} documents in flight (limit {LIMIT})")


@pytest.mark.points(2)
@pytest.mark.task("concurrency:run")
def test_documents_run_concurrently(grade: Any) -> None:
    """With concurrency 4, more than one document is in flight at a time"""
    run = _run(grade)
    peak, _ = documents_in_flight(run.events)
    if peak < 2:
        grade.fail(f"concurrency: {DOCS} documents with config.concurrency {LIMIT} were processed one at a "
                   "time (peak 1 document in flight): run documents as concurrent tasks")
    grade.note(f"peak {peak} documents in flight")


@pytest.mark.points(3)
@pytest.mark.task("concurrency:run")
def test_chunks_of_one_document_in_order(grade: Any) -> None:
    """The chunks of one document are sent one at a time, in order"""
    run = _run(grade)
    overlapping = sorted({e["doc_id"] for e in run.calls() if int(e.get("doc_inflight", 0)) > 1})
    order: dict[str, list[int]] = defaultdict(list)
    for e in run.calls():
        order[e["doc_id"]].append(int(e["chunk"]))
    unordered = sorted(d for d, seq in order.items() if seq != sorted(seq))
    problems = []
    if overlapping:
        peak = max(int(e.get("doc_inflight", 0)) for e in run.calls())
        problems.append(f"{len(overlapping)} documents had up to {peak} chunk calls in flight at once "
                        f"({some(overlapping, 3)})")
    if unordered:
        problems.append(f"chunks sent out of order for {some(unordered, 3)}, e.g. {unordered[0]}: "
                        f"{order[unordered[0]][:10]}")
    if problems:
        grade.fail("chunk order: " + "; ".join(problems) + "; embed a document's chunks sequentially "
                   "(for index, chunk in enumerate(chunks): await ...)")
    grade.note(f"{len(order)} documents, chunks strictly sequential")
