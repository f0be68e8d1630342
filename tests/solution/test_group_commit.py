"""The reference's group commit of checkpoint marks (组提交): late on disk inside a group, never lost by a finished run."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from batchlab.contract import DONE, PROCESSING, BatchConfig
from batchlab.examples import make_documents
from batchlab.paths import solution_module
from batchlab.service import SimulatedService
from batchlab.sink import SqliteSink
from batchlab.testing import MemoryCheckpointStore, RecordingSleep
from batchlab.worker import load_impl


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    """The reference solution, imported as the worker imports a student's module."""
    return load_impl(solution_module(), name="reference_group_commit")


def on_disk(path: Path) -> dict[str, str]:
    """The checkpoint's committed states, read by another connection (what a process started after a kill sees)."""
    conn = sqlite3.connect(str(path))
    try:
        return dict(conn.execute("SELECT key, state FROM checkpoint").fetchall())
    finally:
        conn.close()


def test_a_mark_in_a_group_reaches_the_disk_at_the_groups_commit(ref: ModuleType, tmp_path: Path) -> None:
    """Inside a group a transition is visible to its own store at once and on disk only once the group is full."""
    store = ref.CheckpointStore(tmp_path, "b")
    with store.group(every=2, window_s=3600.0) as group:
        store.transition("k1", PROCESSING, doc_id="d1")
        group.tick()
        seen_inside, before = store.get("k1").state, on_disk(store.path)
        store.transition("k2", PROCESSING, doc_id="d2")
        group.tick()
        after = on_disk(store.path)
    store.close()
    assert (seen_inside, before, after) == (PROCESSING, {}, {"k1": PROCESSING, "k2": PROCESSING})


def test_leaving_a_group_commits_its_last_marks(ref: ModuleType, tmp_path: Path) -> None:
    """The marks of a group not yet full are committed when the group ends."""
    store = ref.CheckpointStore(tmp_path, "b")
    with store.group(every=100, window_s=3600.0) as group:
        store.transition("k1", PROCESSING, doc_id="d1")
        store.transition("k1", DONE)
        group.tick()
    store.close()
    assert on_disk(tmp_path / "checkpoint_b.sqlite") == {"k1": DONE}


def test_a_transition_outside_a_group_is_durable_when_it_returns(ref: ModuleType, tmp_path: Path) -> None:
    """Step 01's contract is unchanged: without a group each transition is on disk when it returns."""
    store = ref.CheckpointStore(tmp_path, "b")
    store.transition("k1", PROCESSING, doc_id="d1")
    seen = on_disk(store.path)
    store.close()
    assert seen == {"k1": PROCESSING}


def test_a_store_that_cannot_group_gets_a_group_that_does_nothing(ref: ModuleType) -> None:
    """A store without ``group`` (or one left raising NotImplementedError) keeps committing each mark alone."""

    class Unfinished(MemoryCheckpointStore):
        def group(self) -> Any:
            raise NotImplementedError("TODO")

    for store in (MemoryCheckpointStore(), Unfinished()):
        with ref.grouped(store, None) as group:
            group.tick()
            group.commit()
        assert group.commits == 0


def test_a_sharded_run_does_not_group(ref: ModuleType, tmp_path: Path) -> None:
    """A shard's worker shares the checkpoint file with other workers: it never holds its write lock for a window."""
    store = ref.CheckpointStore(tmp_path, "b", shard="0/2")
    with ref.grouped(store, "0/2") as group:
        store.transition("k1", PROCESSING, doc_id="d1")
        seen = on_disk(store.path)
    store.close()
    assert (seen, group.commits) == ({"k1": PROCESSING}, 0)


def test_a_finished_batch_has_committed_every_mark(ref: ModuleType, tmp_path: Path) -> None:
    """After process_documents_batch returns, a new connection finds every document done: no mark left in a group."""
    documents = make_documents(40, seed=3)
    sink = SqliteSink(tmp_path / "sink.sqlite")
    try:
        report = asyncio.run(ref.process_documents_batch(
            documents, batch_id="b", service=SimulatedService(sleep=RecordingSleep()), sink=sink,
            state_dir=tmp_path / "state", config=BatchConfig(concurrency=4), sleep=RecordingSleep()))
        committed = sink.keys()
    finally:
        sink.close()
    states = on_disk(tmp_path / "state" / "checkpoint_b.sqlite")
    assert {key: states.get(key) for key in committed} == dict.fromkeys(committed, DONE)
    assert report.done == len(committed) > 0
