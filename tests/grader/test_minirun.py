"""A step test's batch run refuses full outputs the service never answered and forged records (grader/minirun.py),
and its harness side (grader/stepharness.py) places the kill before the K-th write and the retry guard."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchlab.documents import ident_of, parse_document
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.rundir import RunDir
from batchlab.service import LatencyModel
from batchlab.sink import SinkRecord, read_outputs

from grader.minirun import refuse_unbacked, unbacked_commits, unbacked_results
from grader.sandbox import Verdict
from grader.stepharness import StepHarness, parse_lines, refuse_forged, run_step_pass


def _record(key: str, chunks: int, mode: str = "full") -> SinkRecord:
    return SinkRecord(key=key, doc_id=key, ident=f"i-{key}", mode=mode, chunks=["t"] * chunks,
                      vectors=[[0.0]] * chunks, committed_at=0.0, writes=1)


def _ok(key: str, chunk: int, pass_no: int = 1) -> dict[str, Any]:
    return {"ev": "call_ok", "pass": pass_no, "ident": f"i-{key}", "chunk": chunk, "doc_id": key}


def _put(key: str, pass_no: int, mode: str = "full") -> dict[str, Any]:
    return {"ev": "sink_put", "pass": pass_no, "ident": f"i-{key}", "key": key, "doc_id": key, "mode": mode}


def test_a_full_output_whose_every_chunk_was_answered_is_backed() -> None:
    """Two chunks answered (one in an earlier pass), then committed: nothing is refused."""
    events = [_ok("a", 0, 1), _ok("a", 1, 2), _put("a", 2)]
    assert unbacked_commits(events, [_record("a", 2)]) == {}


def test_a_full_output_with_a_chunk_never_answered_is_unbacked_in_its_pass() -> None:
    """A commit whose second chunk no call answered is listed under the pass that committed it."""
    events = [_ok("a", 0), _put("a", 1), _ok("b", 0, 2), _put("b", 2)]
    assert unbacked_commits(events, [_record("a", 2), _record("b", 1)]) == {1: ["a"]}


def test_a_degraded_output_needs_no_call() -> None:
    """The degraded path calls nothing, so a degraded commit without calls is not refused."""
    assert unbacked_commits([_put("a", 1, mode="degraded")], [_record("a", 3, mode="degraded")]) == {}


def test_a_pass_with_unbacked_commits_becomes_a_student_error_that_names_them() -> None:
    """Only the pass that committed unbacked outputs is refused, with the documents and the rule in its message."""
    verdicts = [Verdict(check="batch_pass", status="ok"), Verdict(check="batch_pass", status="ok")]
    refused = refuse_unbacked(verdicts, {2: ["doc-7"]})
    assert refused[0].ok and not refused[1].ok
    assert refused[1].status == "student_error"
    message = refused[1].failure("the resume")
    assert "doc-7" in message and "outputs-backed-by-calls" in message and "service.embed" in message


def test_a_full_result_of_process_document_needs_an_answer_for_every_chunk() -> None:
    """A ``documents`` probe result in mode full whose chunks the service did not all answer is listed; a
    degraded one is not, nor one whose every chunk has a ``call_ok``."""
    docs = [{"id": "a", "source": "wiki", "content": "x"}, {"id": "b", "source": "wiki", "content": "y"},
            {"id": "c", "source": "wiki", "content": "z"}]
    ident_a = ident_of(parse_document(docs[0]))
    events = [{"ev": "call_ok", "pass": 1, "ident": ident_a, "chunk": 0}]
    results = {"a": {"mode": "full", "chunks": 1}, "b": {"mode": "full", "chunks": 1},
               "c": {"mode": "degraded", "chunks": 1}}
    assert unbacked_results(docs, results, events) == ["b"]


def test_forged_records_refuse_a_pass_and_keep_that_reason() -> None:
    """A pass whose records were forged becomes a ForgedRecords student error that names what was found, and the
    unbacked rule does not overwrite it; a pass without findings is left alone."""
    forged = refuse_forged(Verdict(check="batch_pass", status="ok"), ["pass 1: 4 ledger events sent"])
    assert forged.status == "student_error" and forged.error["type"] == "ForgedRecords"
    assert "forged records" in forged.failure("the batch") and "4 ledger events" in forged.failure("the batch")
    assert refuse_unbacked([forged], {1: ["doc-1"]})[0].error["type"] == "ForgedRecords"
    assert refuse_forged(Verdict(check="batch_pass", status="ok"), []).ok


CHILD = """
import asyncio, json, sys
from batchlab.docmodel import Document
from batchlab.remote import Channel, RemoteService, RemoteSink
channel = Channel(int(sys.argv[1]))
doc = Document(id="d", content="text", source="wiki", title="", metadata={})
out = []
if sys.argv[2] == "embed":
    service = RemoteService(channel)
    async def main():
        for _ in range(5):
            try:
                await service.embed(doc, 0, "text")
                out.append("ok")
            except Exception as exc:
                out.append(getattr(exc, "kind", type(exc).__name__))
    asyncio.run(main())
else:
    sink = RemoteSink(channel)
    for n in range(3):
        sink.put(f"k{n}", doc, ["text"], [[0.0]], mode="degraded")
        out.append(n)
print(json.dumps(out), flush=True)
"""


def _serve_child(tmp_path: Path, what: str, **settings: Any) -> tuple[subprocess.CompletedProcess[str], StepHarness]:
    side = StepHarness(tmp_path / "records", pass_no=1, crash=CrashPlan(), plan=settings.pop("plan", FaultPlan()),
                       latency=LatencyModel(median_ms=0), **settings)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(side.child_fd), what], pass_fds=(side.child_fd,),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    side.start(proc)  # type: ignore[arg-type]
    stdout, _ = proc.communicate(timeout=60)
    side.close(drain=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""), side


def test_the_step_harness_kills_the_probe_before_the_kth_sink_write(tmp_path: Path) -> None:
    """With kill_before_put_at=2, a real child's second put is never committed: the crash is recorded first
    (kind before_commit, at 2) and the child's group is SIGKILLed."""
    (tmp_path / "records").mkdir()
    done, side = _serve_child(tmp_path, "put", kill_before_put_at=2)
    assert done.returncode == -signal.SIGKILL and done.stdout == ""
    events = parse_lines(bytes(side.ledger.written))
    assert [(e["ev"], e.get("kind"), e.get("at")) for e in events if e["ev"] in ("sink_put", "crash")] == [
        ("sink_put", None, None), ("crash", "before_commit", 2)]
    assert [rec.key for rec in read_outputs(RunDir(tmp_path / "records").sink)] == ["k0"]


def test_the_step_harness_ends_endless_retries_with_its_guard(tmp_path: Path) -> None:
    """Past ``guard`` attempts on one chunk the harness side answers grader_guard without calling the service,
    and counts each trip."""
    (tmp_path / "records").mkdir()
    done, side = _serve_child(tmp_path, "embed", guard=3, plan=FaultPlan(fail_first_ids={"d": 100}))
    assert done.returncode == 0, done
    kinds = json.loads(done.stdout)
    assert kinds[3:] == ["grader_guard", "grader_guard"] and "grader_guard" not in kinds[:3]
    assert side.guard_trips == 2
    assert len([e for e in parse_lines(bytes(side.ledger.written)) if e["ev"] == "call_start"]) == 3


IMPL = """
import asyncio
from batchlab.pipeline import chunk_text, clean_text

async def process_document(doc, *, service, config, sleep=None, on_call=None, **kwargs):
    chunks = chunk_text(clean_text(doc.content))
    vectors = []
    for i, text in enumerate(chunks):
        if FORGE:
            service._channel.send({"op": "emit", "ev": "call_ok", "fields": {"ident": "x", "chunk": i}})
        vectors.append(await service.embed(doc, i, text))
    return {"mode": "full", "chunks": chunks, "vectors": vectors, "error": None, "retries": 0}
"""


def _documents_probe(tmp_path: Path, *, forge: bool) -> Any:
    tmp_path.mkdir()
    impl = tmp_path / "document_processor.py"
    impl.write_text(f"FORGE = {forge}\n" + IMPL, encoding="utf-8")
    args = {"documents": [{"id": "d-1", "source": "wiki", "content": "One short document."}], "driver": "sequential",
            "latency": {"median_ms": 0}}
    return run_step_pass(impl, "documents", args, workdir=tmp_path / "work", records=tmp_path / "records", pass_no=1,
                         timeout_s=60)


def test_a_documents_probe_is_served_by_the_harness_side_and_a_forged_event_refuses_it(tmp_path: Path) -> None:
    """A real probe child's calls are recorded by the grader's side (call_start, call_ok); the same probe sending a
    call event of its own gets it refused, never written, and its verdict becomes ForgedRecords."""
    honest = _documents_probe(tmp_path / "honest", forge=False)
    assert honest.verdict.ok, honest.verdict.failure("documents")
    assert [e["ev"] for e in honest.events] == ["call_start", "call_ok"] and honest.forged == []
    forged = _documents_probe(tmp_path / "forged", forge=True)
    assert forged.verdict.error.get("type") == "ForgedRecords", forged.verdict
    assert [e["ev"] for e in forged.events] == ["call_start", "call_ok"]
    assert "1 ledger events sent that only the harness writes" in forged.forged[0]
