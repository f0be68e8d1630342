"""Probe checks that run documents through the harness: step 04's ``documents`` and the batch's ``batch_pass``.

The harness's service, sink and ledger are not here: they live in the grader's process
(:mod:`grader.stepharness`, with the step's fault plan, the retry guard that ends endless
retries and the kill before the K-th sink write), and this probe hands the processor their
proxies (:mod:`batchlab.remote`) over the socket it inherited (``harness_fd``). What the
grader judges of calls and commits is what that side recorded. Only what the student's
process alone can know is reported from here, as its own account: the delays the injected
``sleep`` (a recording fake, so retries wait for nothing) was asked for, ``on_call``
counts, the returned results and ``BatchReport``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Document, parse_document
from batchlab.faults import CrashPlan
from batchlab.ledger import Ev
from batchlab.pipeline import output_matches
from batchlab.remote import RemoteLedger, RemoteService, RemoteSink
from batchlab.rundir import RunDir
from batchlab.stopgate import LedgerProgress
from batchlab.testing import RecordingSleep

from .probe_common import StudentCodeError, harness_channel, need, student_code


def _result_fields(result: Any) -> dict[str, Any]:
    def field(name: str) -> Any:
        return result.get(name) if isinstance(result, dict) else getattr(result, name, None)

    return {name: field(name) for name in ("mode", "chunks", "vectors", "error", "retries")}


def summarize_result(doc: Document, result: Any) -> dict[str, Any]:
    """A student's ``DocumentResult`` as plain data: mode, error, retries, and whether its output is the pipeline's."""
    fields = _result_fields(result)
    chunks, vectors = fields.pop("chunks"), fields.pop("vectors")
    try:
        matches = output_matches(doc, str(fields["mode"]), list(chunks or []), list(vectors or []))
    except Exception:  # noqa: BLE001 - a malformed result simply does not match
        matches = False
    return {**{k: (v if isinstance(v, (int, float, str, type(None))) else repr(v)[:80]) for k, v in fields.items()},
            "matches": matches, "chunks": len(chunks) if isinstance(chunks, (list, tuple)) else 0}


def check_documents(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``process_document`` on each document, one after the other or through ``run_bounded``.

    The harness side records every call (in-flight counts, chunk order, attempts); the
    parent reads its ledger. ``sleep`` is a recording fake, so retries wait for nothing.
    Each result is summarized (mode, error, retries, chunks, whether its output is the
    pipeline's for that mode).
    """
    process_document = need(module, "process_document")
    docs = [parse_document(raw) for raw in args["documents"]]
    service = RemoteService(harness_channel(args))
    config = BatchConfig(**args.get("config", {}))
    sleep = RecordingSleep()
    on_calls: dict[str, int] = {}
    results: dict[str, dict[str, Any]] = {}

    async def one(doc: Document) -> None:
        def on_call() -> None:
            on_calls[doc.id] = on_calls.get(doc.id, 0) + 1

        result = await process_document(doc, service=service, config=config, sleep=sleep, on_call=on_call)
        results[doc.id] = summarize_result(doc, result)

    async def main() -> None:
        if args.get("driver") == "bounded":
            run_bounded = need(module, "run_bounded")
            await run_bounded(docs, one, limit=config.concurrency)
        else:
            for doc in docs:
                await one(doc)

    with student_code():
        asyncio.run(main())
    return {"results": results, "sleeps": sleep.delays, "calls": service.calls, "on_calls": on_calls}


def check_batch_pass(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """One pass of ``process_documents_batch`` with the harness's service, sink and ledger (the worker's job).

    The crash points (``crash``: ``after_commit`` / ``during_call``; ``kill_before_put_at``: SIGKILL
    before the K-th sink write) are the harness side's: it records the crash and kills this probe.
    """
    entry = need(module, "process_documents_batch")
    run = Path(args["run_dir"])
    RunDir(run).state.mkdir(parents=True, exist_ok=True)
    documents = json.loads(Path(args["input"]).read_text(encoding="utf-8"))["documents"]
    channel = harness_channel(args)
    ledger: Any = RemoteLedger(channel)  # what LedgerProgress needs of a Ledger: emit
    crash = CrashPlan(**args["crash"]) if args.get("crash") else CrashPlan()
    ledger.emit(Ev.PASS_START, t0=args.get("t0"), batch_id=args["batch_id"], crash=crash.kind, at=crash.at)
    service, sink = RemoteService(channel), RemoteSink(channel)
    sleep = RecordingSleep()
    kwargs: dict[str, Any] = {"sleep": sleep} if args.get("record_sleep") else {}
    config = BatchConfig(**args.get("config", {}))
    try:
        with student_code():
            report = asyncio.run(entry(documents, batch_id=args["batch_id"], service=service, sink=sink,
                                       state_dir=RunDir(run).state, config=config, progress=LedgerProgress(ledger),
                                       **kwargs))
            report_dict = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    except StudentCodeError as exc:
        ledger.emit(Ev.STUDENT_ERROR, phase="run", error=f"{type(exc.original).__name__}: {exc.original}")
        raise
    ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=sink.commits)
    return {"report": report_dict, "sleeps": sleep.delays, "calls": service.calls}
