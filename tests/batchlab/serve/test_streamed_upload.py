"""The batch service validates an upload and builds its progress from a stream: JSON Lines uploads work as JSON does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchlab.errors import BatchInputError
from batchlab.examples import make_documents
from batchlab.serve.manager import BatchManager
from batchlab.testing import forbid_listing

from .conftest import WAIT_S


@pytest.fixture
def streamed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing an input fails: a stream with more than 3 earlier documents alive, load_batch, Inventory.of."""
    forbid_listing(monkeypatch.setattr, index=False)


def documents() -> list[dict[str, Any]]:
    return make_documents(12, seed=4, min_bytes=100, max_bytes=500, duplicates=1, invalid=1, empty=0)


def as_jsonl(docs: list[dict[str, Any]], *, broken_at: int | None = None) -> bytes:
    lines = [json.dumps({"header": True, "batch_id": "up-1"})] + [json.dumps(d, ensure_ascii=False) for d in docs]
    if broken_at is not None:
        lines.insert(broken_at, '{"id": "cut", "content": ')
    return ("\n".join(lines) + "\n").encode()


def as_json(docs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"batch_id": "up-1", "documents": docs}, ensure_ascii=False).encode()


def table(manager: BatchManager, batch_id: str) -> tuple[Any, ...]:
    """What the service shows of a batch's input: N, each unique document's id, each rejected entry."""
    prog = manager.progress(batch_id)
    return prog.total, [row["doc_id"] for row in prog.docs.values()], [
        (r["index"], r["doc_id"], r["last_error"]) for r in prog.rejected]


def wait_done(manager: BatchManager, batch_id: str) -> str:
    import time

    deadline = time.monotonic() + WAIT_S
    while manager.record(batch_id).state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    return manager.record(batch_id).state


def test_a_jsonl_upload_and_the_same_json_upload_give_the_same_batch(tmp_path: Path, streamed_only: None) -> None:
    """Uploaded as batch.jsonl and as batch.json, the same documents make the same record and progress, both
    complete, and a restarted service reads each stored input (input.jsonl, input.json) back the same."""
    manager = BatchManager(tmp_path / "svc", max_running=1)
    manager.start()
    try:
        lines = manager.create(as_jsonl(documents()), filename="batch.jsonl")
        array = manager.create(as_json(documents()), filename="batch.json")
        assert (lines.name, lines.documents) == (array.name, array.documents) == ("up-1", len(documents()))
        assert table(manager, lines.id) == table(manager, array.id)
        assert manager.store.input_path(lines.id).name == "input.jsonl"
        assert (wait_done(manager, lines.id), wait_done(manager, array.id)) == ("completed", "completed")
    finally:
        manager.shutdown()
    again = BatchManager(tmp_path / "svc", max_running=1)
    try:
        assert table(again, lines.id) == table(again, array.id)
    finally:
        again.shutdown()


def test_a_malformed_line_in_an_upload_rejects_that_document_alone(tmp_path: Path, streamed_only: None) -> None:
    """One line of a JSON Lines upload that is not JSON: one rejected row (invalid_json), every other document kept."""
    manager = BatchManager(tmp_path / "svc", max_running=1)  # not started: the batches stay queued
    try:
        good = manager.create(as_jsonl(documents()), filename="a.jsonl")
        bad = manager.create(as_jsonl(documents(), broken_at=4), filename="b.ndjson")
        total, ids, rejected = table(manager, good.id)
        assert table(manager, bad.id) == (total + 1, ids, sorted([*[(i + (i >= 3), d, c) for i, d, c in rejected],
                                                                  (3, None, "invalid_json")]))
    finally:
        manager.shutdown()


def test_a_whole_batch_error_in_an_upload_names_the_clients_file_and_the_line(tmp_path: Path) -> None:
    """A JSON Lines upload that is not UTF-8 is refused with the unified error, its line and byte, under its name."""
    manager = BatchManager(tmp_path / "svc", max_running=1)  # not started
    try:
        with pytest.raises(BatchInputError) as info:
            manager.create(b'{"id": "a", "content": "x"}\n{"id": "b", "content": "\xff"}\n', filename="up.jsonl")
        details = info.value.details
        assert (info.value.code, details["path"], details["line"]) == ("invalid_utf8", "up.jsonl", 2)
        assert not list((tmp_path / "svc" / "batches").glob("*"))
    finally:
        manager.shutdown()
