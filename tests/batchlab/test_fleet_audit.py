"""The fleet's audit reads lost and duplicated documents from the records alone, one input document at a time."""

from __future__ import annotations

from pathlib import Path

from batchlab.documents import Document, load_batch
from batchlab.examples import make_documents, write_input
from batchlab.fleet_audit import audit
from batchlab.rundir import RunDir
from batchlab.sink import SqliteSink


def test_a_document_put_twice_is_a_duplicate_and_one_never_put_is_lost(tmp_path: Path) -> None:
    """Of five documents, one committed twice (a duplicate put), two once, two never (lost, named by id)."""
    source = write_input(tmp_path / "in.json", make_documents(5, seed=2))
    docs: list[Document] = load_batch(source).unique_documents()
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    sink = SqliteSink(run.sink)
    for doc in (docs[0], docs[0], docs[1], docs[2]):
        sink.put(f"k-{doc.id}", doc, ["chunk"], [[0.0]])
    sink.close()
    found = audit(run.path, source, "batch-001")
    assert (found.unique, found.committed) == (5, 3)
    assert found.lost == sorted([docs[3].id, docs[4].id])
    assert found.duplicates == {docs[0].id: 2} and found.extra_puts == 1
    assert (found.stale_commits, found.refusals, found.takeovers) == ([], 0, 0)
