"""The reference's batch steps one at a time (``classify_entry``, ``run_document``, ``tally``), on the shared doubles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.contract import DEGRADED, DONE, FAILED, PROCESSING, BatchConfig, BatchReport
from batchlab.documents import Document, parse_document
from batchlab.paths import solution_module
from batchlab.service import SimulatedService
from batchlab.sink import SqliteSink
from batchlab.testing import FakeClock, MemoryCheckpointStore, RecordingSleep
from batchlab.worker import load_impl

RAW = {"id": "doc-1", "content": "Some text to embed."}


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    """The reference solution, imported as the worker imports a student's module."""
    return load_impl(solution_module(), name="reference_batch_steps")


@pytest.fixture
def make_run(ref: ModuleType, tmp_path: Path) -> Iterator[Any]:
    """A BatchRun over an in-memory checkpoint, a real SQLite sink and the harness service (no real waits)."""
    sinks: list[SqliteSink] = []

    def make(*, committed: set[str] | None = None, service: Any = None, config: BatchConfig | None = None) -> Any:
        sink = SqliteSink(tmp_path / f"sink-{len(sinks)}.sqlite")
        sinks.append(sink)
        clock = FakeClock()
        return ref.BatchRun(store=MemoryCheckpointStore(), sink=sink,
                            service=service or SimulatedService(sleep=RecordingSleep()), config=config or BatchConfig(),
                            progress=lambda *a, **k: None, sleep=RecordingSleep(clock=clock), clock=clock,
                            report=BatchReport(batch_id="b"), committed=committed or set())

    yield make
    for sink in sinks:
        sink.close()


class TestClassifyEntry:
    def test_a_new_document_is_work_and_its_repeat_a_duplicate(self, ref: ModuleType, make_run: Any) -> None:
        """The first time a key is met it is returned to run; the second time it is counted as a duplicate."""
        run = make_run()
        first = ref.classify_entry(run, 0, RAW)
        second = ref.classify_entry(run, 1, dict(RAW))
        assert (first[1].id, second, run.report.duplicates_in_input) == ("doc-1", None, 1)

    def test_an_invalid_entry_is_rejected_and_marked_failed(self, ref: ModuleType, make_run: Any) -> None:
        """An entry without content is rejected, never run, and failed in the checkpoint under invalid#index."""
        run = make_run()
        assert ref.classify_entry(run, 3, {"id": "x"}) is None
        entry = run.store.get("invalid#3")
        assert (run.report.rejected, entry.state, entry.doc_id, len(run.seen)) == (1, FAILED, "x", 0)

    def test_a_done_key_is_skipped(self, ref: ModuleType, make_run: Any) -> None:
        """A key the checkpoint says done is skipped, not run again."""
        run = make_run()
        key = ref.make_idempotency_key(parse_document(RAW))
        run.store.transition(key, PROCESSING)
        run.store.transition(key, DONE)
        assert (ref.classify_entry(run, 0, RAW), run.report.skipped) == (None, 1)

    def test_a_key_committed_in_the_sink_is_healed_not_run(self, ref: ModuleType, make_run: Any) -> None:
        """Killed between the sink's write and the checkpoint: the checkpoint is healed to the sink's mode."""
        doc = parse_document(RAW)
        key = ref.make_idempotency_key(doc)
        run = make_run(committed={key})
        run.sink.put(key, doc, ["c"], [[0.0]], mode="degraded")
        assert (ref.classify_entry(run, 0, RAW), run.report.recovered, run.store.get(key).state) == (
            None, 1, DEGRADED)


class _PoisonService:
    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        raise ValueError("a poison document")


class TestRunDocument:
    def test_a_document_is_committed_then_done(self, ref: ModuleType, make_run: Any) -> None:
        """The sink has the output and the checkpoint says done, with one latency and one execution."""
        run = make_run()
        key, doc = ref.classify_entry(run, 0, RAW)
        state = asyncio.run(ref.run_document(run, key, doc))
        assert (state, key in run.sink, run.store.get(key).state, run.report.executed, len(run.latencies)) == (
            DONE, True, DONE, 1, 1)

    def test_a_poison_document_ends_failed_and_does_not_raise(self, ref: ModuleType, make_run: Any) -> None:
        """Anything raised ends the document failed with its classified reason; nothing is committed."""
        run = make_run(service=_PoisonService())
        key, doc = ref.classify_entry(run, 0, RAW)
        state = asyncio.run(ref.run_document(run, key, doc))
        assert (state, key in run.sink, dict(run.reasons)) == (FAILED, False, {"unexpected:ValueError": 1})


class _DownService:
    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        from batchlab.service import PermanentServiceError

        raise PermanentServiceError("parse_error")


class TestBackfill:
    """后续标记待补: with ``config.backfill`` a degraded key is redone on the full path; without it, skipped."""

    def _degraded(self, ref: ModuleType, run: Any) -> str:
        doc = parse_document(RAW)
        key = ref.make_idempotency_key(doc)
        run.sink.put(key, doc, ["c"], [[0.0]], mode="degraded")
        run.store.transition(key, PROCESSING)
        run.store.transition(key, DEGRADED)
        return str(key)

    def test_a_degraded_key_is_skipped_without_backfill_and_run_with_it(self, ref: ModuleType, make_run: Any) -> None:
        """A degraded key is skipped in a plain run and returned as work (noted in backfilling) in a backfill run."""
        plain, backfill = make_run(), make_run(config=BatchConfig(backfill=True))
        self._degraded(ref, plain)
        key = self._degraded(ref, backfill)
        assert (ref.classify_entry(plain, 0, RAW), plain.report.skipped) == (None, 1)
        assert ref.classify_entry(backfill, 0, RAW)[0] == key and backfill.backfilling == {key}
        assert backfill.report.skipped == 0

    def test_a_key_committed_degraded_but_unrecorded_is_backfilled_not_healed(
            self, ref: ModuleType, make_run: Any) -> None:
        """Committed degraded in the sink, unknown to the checkpoint: a backfill run redoes it instead of healing it."""
        doc = parse_document(RAW)
        key = ref.make_idempotency_key(doc)
        run = make_run(committed={key}, config=BatchConfig(backfill=True))
        run.sink.put(key, doc, ["c"], [[0.0]], mode="degraded")
        assert ref.classify_entry(run, 0, RAW)[0] == key and run.report.recovered == 0

    def test_a_backfilled_document_is_upgraded_and_not_a_duplicate(self, ref: ModuleType, make_run: Any) -> None:
        """The full output replaces the degraded one: upgraded 1, duplicate executions 0, the sink's writes still 1."""
        run = make_run(config=BatchConfig(backfill=True))
        key = self._degraded(ref, run)
        key, doc = ref.classify_entry(run, 0, RAW)
        assert asyncio.run(ref.run_document(run, key, doc)) == DONE
        record = run.sink.get(key)
        assert (record.mode, record.writes, run.report.upgraded, run.report.duplicate_executions) == ("full", 1, 1, 0)

    def test_a_backfill_that_fails_again_keeps_the_degraded_output_and_writes_nothing(
            self, ref: ModuleType, make_run: Any) -> None:
        """The service still down: the degraded output stays, nothing is written, the key is degraded again."""
        run = make_run(config=BatchConfig(backfill=True), service=_DownService())
        self._degraded(ref, run)
        key, doc = ref.classify_entry(run, 0, RAW)
        assert asyncio.run(ref.run_document(run, key, doc)) == DEGRADED
        record = run.sink.get(key)
        assert (record.chunks, record.writes, run.report.executed, run.report.upgraded) == (["c"], 1, 0, 0)
        assert run.store.get(key).state == DEGRADED


def test_tally_counts_the_valid_keys_by_the_state_they_ended_in(ref: ModuleType, make_run: Any) -> None:
    """Keys are counted by the state they ended in as they end (skipped, run), below the offset too; never rejected ones."""
    run = make_run()
    for key, final in (("a", DONE), ("b", DEGRADED), ("c", FAILED)):
        run.store.transition(key, PROCESSING)
        run.store.transition(key, final)
        run.offset.running[key] = len(run.offset.running)
        ref.finish_document(run, key)
    run.store.transition("invalid#9", FAILED)
    ref.tally(run)
    assert (run.report.done, run.report.degraded, run.report.failed) == (1, 1, 1)
