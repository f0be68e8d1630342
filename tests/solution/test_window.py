"""The reference's batch window (分批窗口) and global offset (全局 offset), in process, on real files and SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.batchstream import BatchStream, StreamEntry, open_batch
from batchlab.contract import BatchConfig, BatchReport
from batchlab.documents import Document
from batchlab.examples import make_documents, write_documents, write_input
from batchlab.paths import solution_module
from batchlab.sink import SqliteSink
from batchlab.worker import load_impl

N = 1500
#: The counts of a report that describe the whole batch (they must not depend on where a run started reading).
WHOLE = ("total", "unique", "rejected", "duplicates_in_input", "done", "degraded", "failed")


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    """The reference solution, imported as the worker imports a student's module."""
    return load_impl(solution_module(), name="reference_window")


class QuickService:
    """Answers every call after yielding to the event loop once, so documents really run side by side."""

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        self.calls += 1
        await asyncio.sleep(0)
        return [float(chunk), float(len(text))]


class CountingStream(BatchStream):
    """A stream that counts the entries it hands out (what a run read and parsed) and can stop early."""

    def __init__(self, stream: BatchStream, stop_after: int | None = None) -> None:
        super().__init__(stream.header)
        self.read = 0
        self.stop_after = stop_after

    def entries(self, start: tuple[int, int, int] | None = None) -> Iterator[StreamEntry]:
        for entry in super().entries(start):
            if self.stop_after is not None and entry.index >= self.stop_after:
                return
            self.read += 1
            yield entry


def write_batch(path: Path, n: int = N, seed: int = 7) -> Path:
    """A batch with duplicates and invalid entries, as JSON (indented: entries span lines) or JSON Lines."""
    docs = make_documents(n, seed=seed, min_bytes=80, max_bytes=400)
    if path.suffix == ".jsonl":
        write_documents(path, docs, format="jsonl")
        return path
    return write_input(path, docs)


def run(ref: ModuleType, documents: Any, tmp: Path, **kwargs: Any) -> BatchReport:
    tmp.mkdir(exist_ok=True)
    sink = SqliteSink(tmp / "sink.sqlite")
    try:
        report: BatchReport = asyncio.run(ref.process_documents_batch(
            documents, batch_id="b", service=QuickService(), sink=sink, state_dir=tmp / "state",
            config=BatchConfig(concurrency=4, **kwargs)))
    finally:
        sink.close()
    return report


def sink_writes(tmp: Path) -> list[int]:
    sink = SqliteSink(tmp / "sink.sqlite")
    try:
        return [w for (w,) in sink._conn.execute("SELECT writes FROM outputs")]
    finally:
        sink.close()


def whole(report: BatchReport) -> tuple[int, ...]:
    return tuple(getattr(report, name) for name in WHOLE)


def test_a_generator_is_pulled_at_most_the_window_ahead_of_the_finished_documents(ref: ModuleType,
                                                                                   tmp_path: Path) -> None:
    """A generator of documents is read only as slots free up: read - finished never exceeds concurrency + 1."""
    docs = make_documents(300, seed=3, min_bytes=80, max_bytes=400, duplicates=0)  # each ends with a progress call
    finished, ahead = [0], []

    def progress(doc_id: str, state: str, **_: Any) -> None:
        finished[0] += state in ("done", "degraded", "failed")

    def generate() -> Iterator[dict[str, Any]]:
        for read, doc in enumerate(docs, start=1):
            ahead.append(read - finished[0])
            yield doc

    sink = SqliteSink(tmp_path / "sink.sqlite")
    report = asyncio.run(ref.process_documents_batch(
        generate(), batch_id="b", service=QuickService(), sink=sink, state_dir=tmp_path / "state",
        config=BatchConfig(concurrency=4), progress=progress))
    sink.close()
    assert report.total == len(docs) and report.executed + report.rejected == len(docs)
    assert max(ahead) <= 4 + 1, max(ahead)


def test_a_list_and_a_stream_of_the_same_batch_give_the_same_report(ref: ModuleType, tmp_path: Path) -> None:
    """The lesson's list stays valid input: as a list or read as a stream, the batch reports the same counts."""
    path = write_batch(tmp_path / "in.jsonl")
    listed = run(ref, list(open_batch(path)), tmp_path / "list")
    streamed = run(ref, open_batch(path), tmp_path / "stream")
    assert whole(listed) == whole(streamed)
    assert listed.rejected > 0 and listed.duplicates_in_input > 0


@pytest.mark.parametrize("name", ["in.json", "in.jsonl"])
def test_a_finished_batch_reruns_without_reading_an_entry(ref: ModuleType, tmp_path: Path, name: str) -> None:
    """After a finished run the global offset is at the end: a rerun reads no entry and reports the same batch."""
    path = write_batch(tmp_path / name)
    first = run(ref, open_batch(path), tmp_path)
    again = CountingStream(open_batch(path))
    second = run(ref, again, tmp_path)
    assert again.read == 0
    assert (second.offset_index, second.executed, second.skipped) == (first.total, 0, first.unique)
    assert whole(second) == whole(first) and second.checkpoint_hit_rate == 1.0


@pytest.mark.parametrize("name", ["in.json", "in.jsonl"])
def test_a_resume_reads_only_past_the_offset_and_redoes_nothing(ref: ModuleType, tmp_path: Path, name: str) -> None:
    """A run that read 1000 entries leaves the offset there: the next reads only the rest, each key written once."""
    path = write_batch(tmp_path / name)
    cut = CountingStream(open_batch(path), stop_after=1000)
    run(ref, cut, tmp_path)
    rest = CountingStream(open_batch(path))
    second = run(ref, rest, tmp_path)
    assert second.offset_index == 1000 and rest.read == N - 1000
    assert set(sink_writes(tmp_path)) == {1}
    alone = run(ref, open_batch(path), tmp_path / "alone")
    assert whole(second) == whole(alone), "the report counts the prefix as a run that read it would"


def test_a_duplicate_of_a_key_below_the_offset_is_still_a_duplicate(ref: ModuleType, tmp_path: Path) -> None:
    """A document repeated after the offset is counted a duplicate, not new work, though its first copy was not read."""
    docs = make_documents(200, seed=5, min_bytes=80, max_bytes=400, duplicates=0, invalid=0, empty=0)
    path = tmp_path / "in.jsonl"
    write_documents(path, [*docs, dict(docs[10])], format="jsonl")
    run(ref, CountingStream(open_batch(path), stop_after=150), tmp_path)
    second = run(ref, open_batch(path), tmp_path)
    assert (second.offset_index, second.duplicates_in_input, second.executed) == (150, 1, 50)
    assert second.unique == 200 and set(sink_writes(tmp_path)) == {1}


def test_a_changed_input_file_is_detected_and_resumes_from_the_markers(ref: ModuleType, tmp_path: Path) -> None:
    """An input edited after the offset was written: the offset is not used (a note says why), the edit is run."""
    path = write_batch(tmp_path / "in.jsonl")
    first = run(ref, open_batch(path), tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    doc = json.loads(lines[700])
    doc["content"] = "Edited after the first run. " + doc["content"]
    lines[700] = json.dumps(doc, ensure_ascii=False) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    edited = CountingStream(open_batch(path))
    second = run(ref, edited, tmp_path)
    assert second.offset_index == 0 and edited.read == first.total
    assert any("changed" in note for note in second.notes), second.notes
    assert second.executed == 1 and set(sink_writes(tmp_path)) == {1}


def test_an_offset_is_not_trusted_when_the_bytes_changed_but_size_and_time_did_not(ref: ModuleType,
                                                                                      tmp_path: Path) -> None:
    """Same size, same modification time, other bytes before the offset (a copy that kept the time): detected."""
    path = write_batch(tmp_path / "in.jsonl", n=300)
    run(ref, open_batch(path), tmp_path)
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    at = data.index(b'"id": "doc-') + len(b'"id": "doc-')
    data[at] = ord("x")  # another id: another key
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = run(ref, open_batch(path), tmp_path)
    assert second.offset_index == 0 and second.executed == 1
    assert any("changed" in note for note in second.notes)


def test_a_backfill_run_does_not_skip_degraded_documents_below_the_offset(ref: ModuleType, tmp_path: Path) -> None:
    """With degraded keys below the offset, a backfill run reads the batch again (the offset would skip them)."""

    class Refusing(QuickService):
        async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
            if doc.id == "doc-00003":
                from batchlab.service import PermanentServiceError
                raise PermanentServiceError("parse")
            return await super().embed(doc, chunk, text)

    path = write_batch(tmp_path / "in.jsonl", n=100)
    sink = SqliteSink(tmp_path / "sink.sqlite")
    first = asyncio.run(ref.process_documents_batch(
        open_batch(path), batch_id="b", service=Refusing(), sink=sink, state_dir=tmp_path / "state",
        config=BatchConfig(concurrency=4)))
    sink.close()
    assert first.degraded == 1
    second = run(ref, open_batch(path), tmp_path, backfill=True)
    assert (second.offset_index, second.upgraded, second.degraded) == (0, 1, 0)
    assert any("backfill" in note for note in second.notes)


def test_positions_locked_by_a_paused_process_are_not_waited_for(ref: ModuleType, tmp_path: Path) -> None:
    """Another process holding the positions' write lock (a paused zombie): the run reads every entry, says why, ends."""
    path = write_batch(tmp_path / "in.jsonl", n=200)
    first = run(ref, CountingStream(open_batch(path), stop_after=120), tmp_path)
    positions = tmp_path / "state" / "positions_b.sqlite"
    assert positions.exists() and first.total == 120
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute('BEGIN IMMEDIATE'); c.execute('DELETE FROM offset')\n"
         "print('locked', flush=True); time.sleep(120)", str(positions)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        every = CountingStream(open_batch(path))
        second = run(ref, every, tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert every.read == 200 and second.offset_index == 0
    assert any("locked by another process" in note for note in second.notes), second.notes
    assert whole(second) == whole(run(ref, open_batch(path), tmp_path / "alone"))
    assert set(sink_writes(tmp_path)) == {1}, "nothing committed before was written again"
