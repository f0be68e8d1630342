"""A real SIGKILL after every commit of a small batch, then a resume: nothing committed is redone, and the resume
reads (hands the processor) only the entries past the global offset it finds."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.batchstream import BatchStream, StreamEntry, open_batch
from batchlab.contract import BatchConfig, BatchReport
from batchlab.documents import Document
from batchlab.examples import make_documents, write_documents
from batchlab.faults import CRASH_AFTER_COMMIT, CrashPlan
from batchlab.paths import solution_module
from batchlab.sink import SqliteSink, read_outputs
from batchlab.worker import load_impl

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child for real")
#: The counts of a report that describe the whole batch, wherever the run started reading.
WHOLE = ("total", "unique", "rejected", "duplicates_in_input", "done", "degraded", "failed")


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    return load_impl(solution_module(), name="reference_kill_positions")


class QuickService:
    """Answers every call after one turn of the event loop, so documents run side by side."""

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        await asyncio.sleep(0)
        return [float(chunk), float(len(text))]


class CountingStream(BatchStream):
    """A stream that counts the entries it hands the processor (each one the processor then parses)."""

    def __init__(self, stream: BatchStream) -> None:
        super().__init__(stream.header)
        self.read = 0

    def entries(self, start: tuple[int, int, int] | None = None) -> Iterator[StreamEntry]:
        for entry in super().entries(start):
            self.read += 1
            yield entry


def process(ref: ModuleType, documents: Any, folder: Path, crash: CrashPlan | None = None) -> BatchReport:
    folder.mkdir(parents=True, exist_ok=True)
    sink = SqliteSink(folder / "sink.sqlite", crash=crash)
    try:
        report: BatchReport = asyncio.run(ref.process_documents_batch(
            documents, batch_id="b", service=QuickService(), sink=sink, state_dir=folder / "state",
            config=BatchConfig(concurrency=3)))
    finally:
        sink.close()
    return report


def killed_after_commit(ref: ModuleType, path: Path, folder: Path, at: int) -> None:
    """Run the batch in a forked child that the sink SIGKILLs right after its commit number ``at``."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            process(ref, open_batch(path), folder, CrashPlan(kind=CRASH_AFTER_COMMIT, at=at))
            code = 4  # the kill never came
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with status {status}"


def test_a_kill_after_any_commit_then_a_resume_redoes_nothing_and_reads_only_past_the_offset(
        ref: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For every commit k of a 30-entry batch (duplicates and invalid entries in it; the offset written every 3
    entries): killed after commit k, the resume executes exactly the U - k documents not committed, writes each
    key once, reads exactly the entries from its offset on, and reports the batch as an uninterrupted run does."""
    monkeypatch.setattr(ref, "OFFSET_EVERY", 3)
    path = tmp_path / "in.jsonl"
    write_documents(path, make_documents(30, seed=6, min_bytes=60, max_bytes=300, duplicates=3, invalid=2, empty=0),
                    format="jsonl")
    alone = process(ref, open_batch(path), tmp_path / "alone")
    assert alone.duplicates_in_input > 0 and alone.rejected > 0
    offsets = []
    for k in range(1, alone.unique + 1):
        folder = tmp_path / f"k{k}"
        killed_after_commit(ref, path, folder, k)
        assert len(read_outputs(folder / "sink.sqlite")) == k
        stream = CountingStream(open_batch(path))
        resumed = process(ref, stream, folder)
        outputs = read_outputs(folder / "sink.sqlite")
        assert len(outputs) == alone.unique and {o.writes for o in outputs} == {1}, f"kill after commit {k}"
        assert resumed.executed == alone.unique - k, f"kill after commit {k}"
        assert stream.read == alone.total - resumed.offset_index, f"kill after commit {k}"
        assert tuple(getattr(resumed, n) for n in WHOLE) == tuple(getattr(alone, n) for n in WHOLE)
        offsets.append(resumed.offset_index)
    assert max(offsets) > 0, "no kill left an offset: the seek past the finished prefix was not exercised"
