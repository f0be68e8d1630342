"""Step 04 (concurrency): one document's chunks in order with retries and degradation; documents in parallel.

Only step 04's code (and steps 01-03) is called, so that this check passes as soon
as step 04 is written: ``process_document`` on each document, on its own or
through ``run_bounded(documents, worker, limit=config.concurrency)``; the batch
(``process_documents_batch``) is step 05's. The harness's service records, with
every call, how many calls were in flight (``inflight``) and how many of them for
the same document (``doc_inflight``); these tests read those figures from the
ledger of the run, written in the grader's process (:mod:`grader.stepharness`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pytest

from grader.analysis import some
from grader.minirun import short_docs, step_probe
from grader.results import GraderError
from grader.sandbox import Verdict
from grader.tasks import Context, task

pytestmark = pytest.mark.step("concurrency")

LIMIT = 4
DOCS = 24
CONCURRENCY_CONFIG = {"concurrency": LIMIT, "max_attempts": 6, "base_delay": 0.001, "max_delay": 0.01,
                      "jitter": 0.001}
BUDGET_CONFIG = {"concurrency": 1, "max_attempts": 3, "base_delay": 0.001, "max_delay": 0.01, "jitter": 0.001}
GUARD = 12


@dataclass
class DocumentsRun:
    """What a ``documents`` probe did: its verdict, the ledger's events and the documents it was given."""

    verdict: Verdict
    events: list[dict[str, Any]]
    documents: list[dict[str, Any]]

    def calls(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == "call_start"]


def documents_run(ctx: Context, name: str, documents: list[dict[str, Any]], **args: Any) -> DocumentsRun:
    verdict, events = step_probe(ctx, "documents", f"documents-{name}", {"documents": documents, **args}, timeout_s=40)
    return DocumentsRun(verdict, events, documents)


@task("concurrency:run")
def concurrency_facts(ctx: Context) -> DocumentsRun:
    return documents_run(ctx, "concurrency", short_docs("conc", DOCS, sentences=3), driver="bounded",
                         plan={"seed": 4, "transient_rate": 0.05}, config=CONCURRENCY_CONFIG,
                         latency={"median_ms": 4.0, "sigma": 0.3}, guard=20)


@task("concurrency:degrade")
def degrade_facts(ctx: Context) -> DocumentsRun:
    plan = {"seed": 5, "fail_first_ids": {"budget-0": 1000}, "permanent_ids": ["budget-1"]}
    return documents_run(ctx, "degrade", short_docs("budget", 5), driver="sequential", plan=plan,
                         config=BUDGET_CONFIG, latency={"median_ms": 0}, guard=GUARD)


def _run(grade: Any, what: str) -> DocumentsRun:
    run: DocumentsRun = grade.facts()
    verdict = run.verdict
    if verdict.is_grader_error:
        raise GraderError(verdict.failure(what))
    if not verdict.ok:
        grade.fail(verdict.failure(what))
    if not run.calls():
        grade.fail(f"{what}: no service call was made")
    return run


def _bounded(grade: Any) -> DocumentsRun:
    return _run(grade, f"run_bounded({DOCS} documents, process_document, limit={LIMIT})")


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
    run = _bounded(grade)
    peak, at = documents_in_flight(run.events)
    if peak > LIMIT and at is not None:
        grade.fail(f"concurrency: {peak} documents had service calls in flight at once > config.concurrency "
                   f"{LIMIT} (first at call #{at['call']}, {at['doc_id']}) in run_bounded(..., limit={LIMIT}): "
                   "take an asyncio.Semaphore(limit) slot before starting each document")
    grade.note(f"peak {peak} documents in flight (limit {LIMIT})")


@pytest.mark.points(2)
@pytest.mark.task("concurrency:run")
def test_documents_run_concurrently(grade: Any) -> None:
    """With limit 4, more than one document is in flight at a time"""
    run = _bounded(grade)
    peak, _ = documents_in_flight(run.events)
    if peak < 2:
        grade.fail(f"concurrency: run_bounded({DOCS} documents, limit={LIMIT}) processed them one at a "
                   "time (peak 1 document in flight): run documents as concurrent tasks (asyncio.TaskGroup)")
    grade.note(f"peak {peak} documents in flight")


@pytest.mark.points(3)
@pytest.mark.task("concurrency:run")
def test_chunks_of_one_document_in_order(grade: Any) -> None:
    """The chunks of one document are sent one at a time, in order"""
    run = _bounded(grade)
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


@pytest.mark.points(1)
@pytest.mark.task("concurrency:run")
def test_on_call_before_every_service_call(grade: Any) -> None:
    """process_document calls on_call() right before each service call, retries included"""
    run = _bounded(grade)
    ledger: dict[str, int] = defaultdict(int)
    for e in run.calls():
        ledger[e["doc_id"]] += 1
    noted = run.verdict.data["on_calls"]
    wrong = sorted(d for d in set(ledger) | set(noted) if noted.get(d, 0) != ledger.get(d, 0))
    if wrong:
        d = wrong[0]
        grade.fail(f"on-call-per-call: on_call() ran {noted.get(d, 0)} times for {d}, which made {ledger.get(d, 0)} "
                   f"service calls ({len(wrong)} documents differ: {some(wrong, 3)})\n"
                   "on_call 规则（on_call rule）：process_document 在每一次 service.embed 调用之前（包括重试）"
                   "调用一次 on_call()，不多不少；批处理用它记下第一次服务调用的时刻，算出 "
                   "BatchReport.resume_time_s（恢复时间，resume time）。")
    grade.note(f"on_call() once per service call ({sum(ledger.values())} calls)")


@pytest.mark.points(2)
@pytest.mark.task("concurrency:degrade")
def test_degrades_instead_of_blocking(grade: Any) -> None:
    """Exhausted retries and permanent errors take the degraded path; healthy documents the full one

    How often each call is retried is step 03's check (make_retrying); this one judges only what comes back.
    """
    run = _run(grade, "process_document on 5 documents (one always times out, one fails permanently)")
    results = run.verdict.data["results"]
    problems = []
    for doc_id, why in (("budget-0", "retries exhausted"), ("budget-1", "permanent error")):
        r = results.get(doc_id)
        if r is None:
            problems.append(f"{doc_id} ({why}) returned no result")
        elif r["mode"] != "degraded" or not r["matches"]:
            problems.append(f"{doc_id} ({why}) came back in mode {r['mode']!r}"
                            + ("" if r["matches"] else " with output that is not the degraded pipeline's")
                            + ": return DocumentResult('degraded', *batchlab.pipeline.degraded_chunks(doc), error)")
        elif not r.get("error"):
            problems.append(f"{doc_id} ({why}) degraded without saying why: set error (e.g. "
                            "'retries_exhausted:timeout', 'permanent:parse_error'); the report counts the reasons")
    for doc_id in ("budget-2", "budget-3", "budget-4"):
        r = results.get(doc_id)
        if r is None or r["mode"] != "full" or not r["matches"]:
            problems.append(f"{doc_id} (no fault) " + ("returned no result" if r is None else
                                                       f"came back in mode {r['mode']!r}" if r["mode"] != "full"
                                                       else "has chunks or vectors that are not the pipeline's "
                                                            "(chunk_text(clean_text(content)), one vector per chunk)"))
    if problems:
        grade.fail("degradation: " + "; ".join(problems))
    grade.note("exhausted and permanent documents degraded with a reason, healthy ones full")
