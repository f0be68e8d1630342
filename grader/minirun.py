"""Small batch runs for the step tests: one or more probe passes behind the process boundary, then their records.

Step tests need things the harness worker cannot do: an injected ``sleep`` that
records delays instead of waiting, a guard that ends endless retries, a SIGKILL
*before* a sink write. The probe's ``batch_pass`` check runs one pass of the
student's batch; the service, the sink and the ledger are a :class:`grader.stepharness.StepHarness`
in this process, so every call and commit is recorded where the student's code
cannot write. :func:`mini_run` chains passes (the student's checkpoint in
``run_dir/state``, the harness's records in ``records_dir``) and returns what the
harness side recorded; :func:`step_probe` runs one ``documents`` or ``deadline``
probe the same way. What only the student's process knows (its sleeps, results,
``on_call`` counts and report) is its own account, judged against those records.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchlab.documents import ident_of, parse_document
from batchlab.harness_records import forget
from batchlab.ledger import Ev
from batchlab.ledger_views import answered_chunks
from batchlab.pipeline import MODE_DEGRADED
from batchlab.rundir import RunDir
from batchlab.sink import SinkRecord, read_outputs, read_puts

from .analysis import PassView, pass_views
from .sandbox import Verdict
from .stepharness import FORGED, refuse_forged, run_step_pass, sink_untouched
from .tasks import Context


@dataclass
class MiniRun:
    run_dir: Path
    documents: list[dict[str, Any]]
    verdicts: list[Verdict]
    events: list[dict[str, Any]]
    puts: list[dict[str, Any]]
    outputs: dict[str, SinkRecord]
    views: list[PassView]
    records_dir: Path | None = None

    def calls(self, pass_no: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == "call_start" and (pass_no is None or e["pass"] == pass_no)]

    def outputs_by_doc(self) -> dict[str, SinkRecord]:
        return {rec.doc_id.strip().casefold(): rec for rec in self.outputs.values()}


def records_for(ctx: Context, name: str) -> Path:
    """A fresh folder for the harness side's records of run ``name``: beside the probes' work directories, never
    inside one (a sandboxed probe sees neither its ledger nor its sink)."""
    path = ctx.work_root / ".harness" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    forget(path)
    return path


def mini_run(ctx: Context, name: str, documents: list[dict[str, Any]], passes: list[dict[str, Any]],
             *, timeout_s: float = 40.0) -> MiniRun:
    """Run ``passes`` (each a dict of ``batch_pass`` arguments) one after the other in one run directory."""
    run_dir = ctx.workdir(f"mini-{name}") / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    records = records_for(ctx, f"mini-{name}")
    input_path = run_dir.parent / "input.json"
    input_path.write_text(json.dumps({"documents": documents}, ensure_ascii=False), encoding="utf-8")
    verdicts, events = [], []
    for pass_no, extra in enumerate(passes, start=1):
        args = {"run_dir": str(run_dir), "input": str(input_path), "batch_id": f"batch-{name}".replace("_", "-"),
                "pass_no": pass_no, **extra}
        step = run_step_pass(ctx.impl, "batch_pass", args, workdir=ctx.workdir(f"mini-{name}"), records=records,
                             pass_no=pass_no, timeout_s=ctx.timeout(timeout_s))
        verdicts.append(step.verdict)
        events += step.events
        if step.verdict.status in ("timeout", "import_error", "grader_error"):
            break  # resuming would hang or fail the same way
    puts = read_puts(RunDir(records).sink)
    outputs = {rec.key: rec for rec in read_outputs(RunDir(records).sink)}
    changed = sink_untouched(records)
    if changed:
        verdicts[-1] = refuse_forged(verdicts[-1], [changed])
    verdicts = refuse_unbacked(verdicts, unbacked_commits(events, outputs.values()))
    return MiniRun(run_dir=run_dir, documents=documents, verdicts=verdicts, events=events, puts=puts,
                   outputs=outputs, views=pass_views(documents, events, puts), records_dir=records)


def step_probe(ctx: Context, check: str, name: str, args: dict[str, Any],
               *, timeout_s: float = 40.0) -> tuple[Verdict, list[dict[str, Any]]]:
    """One ``documents`` or ``deadline`` probe with its harness: the verdict and the harness side's events.

    A document the probe says came back ``full`` must rest on service answers for each of its chunks
    (``outputs-backed-by-calls``), as a batch's commits must.
    """
    records = records_for(ctx, name)
    step = run_step_pass(ctx.impl, check, args, workdir=ctx.workdir(name), records=records, pass_no=1,
                         timeout_s=ctx.timeout(timeout_s))
    verdict = step.verdict
    if verdict.ok and isinstance(verdict.data, dict):
        verdict.data["guard_trips"] = step.guard_trips
        unbacked = unbacked_results(args.get("documents", []), verdict.data.get("results") or {}, step.events)
        verdict = refuse_unbacked([verdict], {1: unbacked} if unbacked else {})[0]
    return verdict, step.events


def unbacked_results(documents: list[dict[str, Any]], results: dict[str, Any],
                     events: list[dict[str, Any]]) -> list[str]:
    """Documents the probe says came back ``full`` although the service never answered all their chunks."""
    answered = answered_chunks(events)
    idents = {}
    for raw in documents:
        try:
            doc = parse_document(raw)
        except Exception:  # noqa: BLE001 - an invalid entry has no result to back
            continue
        idents[doc.id] = ident_of(doc)
    found = []
    for doc_id, row in results.items():
        if not isinstance(row, dict) or row.get("mode") != "full" or str(doc_id) not in idents:
            continue
        ident = idents[str(doc_id)]
        if any((ident, c) not in answered for c in range(max(1, int(row.get("chunks") or 1)))):
            found.append(str(doc_id))
    return found


def short_docs(prefix: str, n: int, *, sentences: int = 1) -> list[dict[str, Any]]:
    """``n`` small documents; with ``sentences`` > 1 each spans several chunks (400 characters each)."""
    body = ("Each chunk of one document must go to the service in order, and never two at once. " * 5).strip()
    docs = []
    for i in range(n):
        if sentences == 1:
            content = f"Short document {prefix}-{i} about checkpoints and retries."
        else:
            content = " ".join(f"{body} Part {prefix}-{i}.{s}." for s in range(sentences))
        docs.append({"id": f"{prefix}-{i}", "source": "wiki", "content": content})
    return docs


def unbacked_commits(events: list[dict[str, Any]], outputs: Iterable[SinkRecord]) -> dict[int, list[str]]:
    """Full outputs committed for chunks the service never answered in this run, by pass: ``{pass: [doc ids]}``.

    A submission can answer its own calls (a monkeypatched ``service.embed``, or the proxy bypassed) and
    commit the result: the harness side's ledger then holds commits without the calls behind them. Degraded
    outputs are exempt (the degraded path calls nothing, and an open breaker degrades without calling). The
    scenarios get the same rule on the harness side (``batchlab.harness``, ``unbacked``).
    """
    answered = answered_chunks(events)
    chunks = {rec.key: len(rec.chunks) for rec in outputs}
    found: dict[int, list[str]] = {}
    for e in events:
        if e["ev"] != Ev.SINK_PUT or e.get("mode") == MODE_DEGRADED:
            continue
        if any((str(e.get("ident")), c) not in answered for c in range(max(1, chunks.get(str(e.get("key")), 1)))):
            found.setdefault(int(e["pass"]), []).append(str(e.get("doc_id")))
    return found


def refuse_unbacked(verdicts: list[Verdict], unbacked: dict[int, list[str]]) -> list[Verdict]:
    """Each pass that committed unbacked outputs becomes a student error that says so (no point rests on it);
    a pass already refused for forged records keeps that reason."""
    out = []
    for pass_no, verdict in enumerate(verdicts, start=1):
        docs = unbacked.get(pass_no)
        if docs and not verdict.is_grader_error and verdict.error.get("type") != FORGED:
            shown = ", ".join(sorted(docs)[:5]) + (f" ... (+{len(docs) - 5} more)" if len(docs) > 5 else "")
            verdict = replace(verdict, status="student_error", error={
                "type": "UnbackedCommit",
                "message": (f"{len(docs)} documents were committed with full outputs although the service never "
                            f"answered their chunks ({shown}): the outputs must come from `await service.embed(...)`, "
                            "not be computed or faked locally (outputs-backed-by-calls)"),
                "traceback": ""})
        out.append(verdict)
    return out
