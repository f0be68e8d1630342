"""Small in-probe batch runs for the step tests: one or more passes, then the ledger's account of them.

Step tests need things the harness worker cannot do: an injected ``sleep`` that
records delays instead of waiting, a guard that ends endless retries, a SIGKILL
*before* a sink write. The probe's ``batch_pass`` check runs one pass with the
harness's own service, sink and ledger; :func:`mini_run` chains passes in one
run directory and returns what the ledger and the sink recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchlab.ledger import Ev, read_events
from batchlab.ledger_views import answered_chunks
from batchlab.pipeline import MODE_DEGRADED
from batchlab.rundir import RunDir
from batchlab.sink import SinkRecord, read_outputs, read_puts

from .analysis import PassView, pass_views
from .sandbox import Verdict
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

    def calls(self, pass_no: int | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == "call_start" and (pass_no is None or e["pass"] == pass_no)]

    def outputs_by_doc(self) -> dict[str, SinkRecord]:
        return {rec.doc_id.strip().casefold(): rec for rec in self.outputs.values()}


def mini_run(ctx: Context, name: str, documents: list[dict[str, Any]], passes: list[dict[str, Any]],
             *, timeout_s: float = 40.0) -> MiniRun:
    """Run ``passes`` (each a dict of ``batch_pass`` arguments) one after the other in one run directory."""
    run_dir = ctx.workdir(f"mini-{name}") / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    input_path = run_dir.parent / "input.json"
    input_path.write_text(json.dumps({"documents": documents}, ensure_ascii=False), encoding="utf-8")
    verdicts = []
    for pass_no, extra in enumerate(passes, start=1):
        args = {"run_dir": str(run_dir), "input": str(input_path), "batch_id": f"batch-{name}".replace("_", "-"),
                "pass_no": pass_no, **extra}
        verdict = ctx.probe("batch_pass", args, workdir=f"mini-{name}", timeout_s=timeout_s)
        verdicts.append(verdict)
        if verdict.status in ("timeout", "import_error", "grader_error"):
            break  # resuming would hang or fail the same way
    events = read_events(RunDir(run_dir).ledger)
    puts = read_puts(RunDir(run_dir).sink)
    outputs = {rec.key: rec for rec in read_outputs(RunDir(run_dir).sink)}
    verdicts = refuse_unbacked(verdicts, unbacked_commits(events, outputs.values()))
    return MiniRun(run_dir=run_dir, documents=documents, verdicts=verdicts, events=events, puts=puts,
                   outputs=outputs, views=pass_views(documents, events, puts))


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

    The probe's service and sink live in the student's process, so a submission can answer its own calls (a
    monkeypatched ``service.embed``) and commit the result: the ledger then holds commits without the calls
    behind them. Degraded outputs are exempt (the degraded path calls nothing, and an open breaker degrades
    without calling). The scenarios get the same rule on the harness side of the process boundary
    (``batchlab.harness``, ``unbacked``).
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
    """Each pass that committed unbacked outputs becomes a student error that says so (no point rests on it)."""
    out = []
    for pass_no, verdict in enumerate(verdicts, start=1):
        docs = unbacked.get(pass_no)
        if docs and not verdict.is_grader_error:
            shown = ", ".join(sorted(docs)[:5]) + (f" ... (+{len(docs) - 5} more)" if len(docs) > 5 else "")
            verdict = replace(verdict, status="student_error", error={
                "type": "UnbackedCommit",
                "message": (f"{len(docs)} documents were committed with full outputs although the service never "
                            f"answered their chunks ({shown}): the outputs must come from `await service.embed(...)`, "
                            "not be computed or faked locally (outputs-backed-by-calls)"),
                "traceback": ""})
        out.append(verdict)
    return out
