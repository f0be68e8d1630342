"""Probe checks that run documents through the harness: step 04's ``documents`` and the batch's ``batch_pass``.

Both use the harness's own service and ledger (the ledger is the parent's
evidence), with the doubles of :mod:`batchlab.testing`: a recording ``sleep`` so
that retries wait for nothing, a service whose retry guard ends endless retries,
and a sink that can SIGKILL the process before the K-th write.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.documents import Document, parse_document
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.ledger import Ev, Ledger
from batchlab.pipeline import output_matches
from batchlab.rundir import RunDir
from batchlab.service import LatencyModel
from batchlab.testing import GuardedService, KillingSink, RecordingSleep
from batchlab.worker import LedgerProgress

from .probe_common import StudentCodeError, need, student_code


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
            "matches": matches}


def _service(args: dict[str, Any], ledger: Ledger, crash: CrashPlan | None = None) -> GuardedService:
    """The harness service with the fault plan, latency and retry guard ``args`` give."""
    return GuardedService(plan=FaultPlan.from_dict(args.get("plan", {})), latency=LatencyModel(**args.get("latency", {})),
                          ledger=ledger, crash=crash, guard=args.get("guard"))


def check_documents(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """``process_document`` on each document, one after the other or through ``run_bounded``.

    The harness's service records every call in a ledger (``run_dir/ledger.jsonl``:
    in-flight counts, chunk order, attempts); the parent reads it. ``sleep`` is a
    recording fake, so retries wait for nothing. Each result is summarized (mode,
    error, retries, whether its output is the pipeline's for that mode).
    """
    process_document = need(module, "process_document")
    run = Path(args["run_dir"])
    run.mkdir(parents=True, exist_ok=True)
    docs = [parse_document(raw) for raw in args["documents"]]
    service = _service(args, Ledger(RunDir(run).ledger, pass_no=1))
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
    return {"results": results, "sleeps": sleep.delays, "calls": service.calls, "guard_trips": service.guard_trips,
            "on_calls": on_calls, "max_inflight": service.max_inflight, "max_doc_inflight": service.max_doc_inflight}


def check_batch_pass(module: Any, args: dict[str, Any]) -> dict[str, Any]:
    """One pass of ``process_documents_batch`` with the harness's service, sink and ledger (the worker's job).

    Extra crash points: ``kill_before_put_at`` (SIGKILL before the K-th sink write)
    and the harness's own ``crash`` plan (``after_commit`` / ``during_call``).
    """
    entry = need(module, "process_documents_batch")
    run = Path(args["run_dir"])
    RunDir(run).state.mkdir(parents=True, exist_ok=True)
    documents = json.loads(Path(args["input"]).read_text(encoding="utf-8"))["documents"]
    pass_no = int(args.get("pass_no", 1))
    ledger = Ledger(RunDir(run).ledger, pass_no=pass_no)
    crash = CrashPlan(**args["crash"]) if args.get("crash") else CrashPlan()
    ledger.emit(Ev.PASS_START, t0=args.get("t0"), batch_id=args["batch_id"], crash=crash.kind, at=crash.at)
    service = _service(args, ledger, crash)
    sink = KillingSink(RunDir(run).sink, ledger=ledger, pass_no=pass_no, crash=crash,
                       kill_before_put_at=int(args.get("kill_before_put_at", 0)))
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
    finally:
        sink.close()
    ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=sink.commits)
    return {"report": report_dict, "sleeps": sleep.delays, "calls": service.calls, "guard_trips": service.guard_trips,
            "max_inflight": service.max_inflight, "max_doc_inflight": service.max_doc_inflight}
