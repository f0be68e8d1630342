"""Planned crashes through the process boundary: the worker's proxies die at the crash point, the harness side backs them.

Real passes (real worker processes, real SQLite, real SIGKILLs) with ``RunSpec.boundary`` on. The processors
below are written so that something observable (a file in the state folder, a progress event) is ready to run
the instant the crash point is passed: with the crash delivered in the proxy, as in-process, it never runs.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from batchlab.contract import BatchConfig
from batchlab.docmodel import Document
from batchlab.examples import write_input
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.harness import HarnessSide
from batchlab.ledger import Ev, read_events
from batchlab.rundir import RunDir
from batchlab.runner import PassResult, RunSpec, prepare, run_pass
from batchlab.service import LatencyModel
from batchlab.sink import read_outputs
from batchlab.wire import doc_to_wire, encode

pytestmark = pytest.mark.slow

DOCS = [{"id": f"doc-{n}", "content": f"Document number {n}. It has one more sentence."} for n in range(1, 4)]

#: Three counted calls (two refused ones first, counted by neither end); right after the third is sent, another
#: coroutine is ready: it writes a file and reports progress.
AFTER_THE_CALL = '''
import asyncio
from dataclasses import replace
from pathlib import Path
from batchlab.contract import BatchReport
from batchlab.documents import parse_document


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, progress=None, **kw):
    a, b = (parse_document(raw) for raw in documents[:2])
    for doc, chunk in ((a, 1.5), (replace(a, content="a lone \\udc80 surrogate"), 0)):
        try:
            await service.embed(doc, chunk, "a call the harness side refuses")
        except Exception:
            pass
    for i in range(2):
        await service.embed(a, i, f"chunk {i}")

    async def crash_point():
        await service.embed(b, 0, "the third call")

    async def ready_next():
        Path(state_dir, "ran-after-the-crash-point").write_text("ran")
        progress(b.id, "done")

    await asyncio.gather(crash_point(), ready_next())
    return BatchReport(batch_id=batch_id)
'''

#: One call and one commit per document; right after each commit returns, a file names it.
AFTER_THE_COMMIT = '''
from pathlib import Path
from batchlab.contract import BatchReport
from batchlab.documents import ident_of, parse_document


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, progress=None, **kw):
    for n, raw in enumerate(documents, start=1):
        doc = parse_document(raw)
        vector = await service.embed(doc, 0, doc.content)
        try:
            sink.put(ident_of(doc), doc, [doc.content], [vector])
        except Exception as exc:
            Path(state_dir, f"put-{n}-raised").write_text(repr(exc))
            continue
        Path(state_dir, f"returned-from-put-{n}").write_text("ran")
    return BatchReport(batch_id=batch_id)
'''

#: A submission that patches the proxy's way of dying out (the kill it would deliver itself).
NO_SELF_KILL = "import batchlab.faults\nbatchlab.faults.kill_self = lambda: None\n"


def run_one(tmp_path: Path, source: str, crash: CrashPlan) -> tuple[PassResult, list[dict[str, Any]], Path]:
    impl = tmp_path / "impl.py"
    impl.write_text(source, encoding="utf-8")
    spec = RunSpec(impl=impl, input=write_input(tmp_path / "input.json", DOCS), run_dir=tmp_path / "run",
                   latency=LatencyModel(median_ms=1.0), plan=FaultPlan(seed=1), config=BatchConfig(concurrency=4),
                   timeout_s=120, boundary=True)
    prepare(spec, fresh=True)
    result = run_pass(spec, 1, crash)
    events = [e for e in read_events(RunDir(spec.run_dir).ledger) if e["pass"] == 1]
    return result, events, RunDir(spec.run_dir).state


def test_nothing_of_the_worker_runs_after_the_kth_call_is_sent(tmp_path: Path) -> None:
    """The proxy SIGKILLs its process right after sending the K-th counted call (refused calls are counted by
    neither end): the coroutine ready next never runs, and the harness side records that call and the crash."""
    result, events, state = run_one(tmp_path, AFTER_THE_CALL, CrashPlan("during_call", at=3))
    assert result.sigkilled and not result.killed_by_parent, result.stderr[-2000:]
    assert not (state / "ran-after-the-crash-point").exists()
    crash = next(e for e in events if e["ev"] == Ev.CRASH)
    assert crash["at"] == 3 and crash["doc_id"] == "doc-2"
    assert [e["call"] for e in events if e["ev"] == Ev.CALL_START] == [1, 2, 3]
    assert events[-1] == crash


def test_nothing_of_the_worker_runs_after_the_kth_commit_returns(tmp_path: Path) -> None:
    """The K-th put is answered with the crash mark once its commit is durable: the proxy dies before the put
    returns (the code after it never runs, no exception reaches it), and the output is in the sink."""
    result, events, state = run_one(tmp_path, AFTER_THE_COMMIT, CrashPlan("after_commit", at=2))
    assert result.sigkilled and not result.killed_by_parent, result.stderr[-2000:]
    assert sorted(p.name for p in state.iterdir() if p.name.startswith(("put-", "returned-"))) == \
        ["returned-from-put-1"]
    assert [e["ev"] for e in events if e["ev"] in (Ev.SINK_PUT, Ev.CRASH)] == [Ev.SINK_PUT, Ev.SINK_PUT, Ev.CRASH]
    assert {r.doc_id for r in read_outputs(RunDir(tmp_path / "run").sink)} == {"doc-1", "doc-2"}


@pytest.mark.parametrize(("source", "crash"), [(AFTER_THE_CALL, CrashPlan("during_call", at=3)),
                                               (AFTER_THE_COMMIT, CrashPlan("after_commit", at=2))],
                         ids=["during_call", "after_commit"])
def test_a_proxy_patched_not_to_die_is_killed_by_the_harness_side(tmp_path: Path, source: str,
                                                                  crash: CrashPlan) -> None:
    """The backstop: a submission that patches the proxy's kill out is SIGKILLed by the harness side, the crash
    event is written, and nothing it sends after the crash point is recorded (the last event is the crash)."""
    result, events, _state = run_one(tmp_path, NO_SELF_KILL + source, crash)
    assert result.sigkilled and not result.killed_by_parent, result.stderr[-2000:]
    assert events[-1]["ev"] == Ev.CRASH and events[-1]["at"] == crash.at
    assert sum(e["ev"] == Ev.SINK_PUT for e in events) == (2 if crash.kind == "after_commit" else 0)


@pytest.mark.parametrize("read_in_time", [True, False], ids=["served-live", "served-at-the-end"])
def test_the_crash_call_is_recorded_even_if_the_worker_died_before_it_was_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_in_time: bool) -> None:
    """A worker that sent the K-th call and died at once: whether the harness side read the call while the
    worker lived or only when the pass ended, every call it sent starts and the crash is recorded at K."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    side = HarnessSide(run_dir, pass_no=1, crash=CrashPlan("during_call", at=2), plan=FaultPlan(seed=1),
                       latency=LatencyModel(median_ms=30_000.0), durable="process")
    if not read_in_time:
        async def never_reads() -> None:
            await asyncio.get_running_loop().create_future()
        monkeypatch.setattr(side, "_serve", never_reads)
    worker = socket.socket(fileno=os.dup(side.child_fd))
    side.start(None)
    doc = doc_to_wire(Document(id="doc-1", content="Some text.", source="default", title="", metadata={}))
    for rid in (1, 2, 3):  # the third was sent after the crash point: it never counts
        worker.sendall(encode({"op": "embed", "id": rid, "doc": doc, "chunk": rid - 1, "text": f"chunk {rid}"}))
    worker.close()
    side.close(drain=True)
    events = read_events(RunDir(run_dir).ledger)
    assert [(e["ev"], e.get("call", e.get("at"))) for e in events] == \
        [(Ev.CALL_START, 1), (Ev.CALL_START, 2), (Ev.CRASH, 2)]
    assert side.crashed
