"""A step test's batch run refuses full outputs the service never answered (grader/minirun.py)."""

from __future__ import annotations

from typing import Any

from batchlab.sink import SinkRecord

from grader.minirun import refuse_unbacked, unbacked_commits
from grader.sandbox import Verdict


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
