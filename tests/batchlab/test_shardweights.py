"""batchlab.shardweights: each shard's planned work, as the processor's own module shards the batch."""

from __future__ import annotations

from pathlib import Path

from batchlab.batchstream import open_batch
from batchlab.documents import parse_document
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.pipeline import chunk_text, clean_text
from batchlab.shardweights import estimate
from batchlab.worker import load_impl


def test_the_reference_s_shards_weigh_the_chunks_of_the_documents_it_runs_in_them(tmp_path: Path) -> None:
    """The estimate (a child process) gives shard i the chunks of exactly the valid documents in_shard puts in i."""
    source = write_input(tmp_path / "in.json", make_documents(120, seed=3, max_bytes=1500))
    weights = estimate(source, solution_module(), "chunks", 3)
    module = load_impl(solution_module())
    expected = [0.0, 0.0, 0.0]
    for raw in open_batch(source):
        try:
            doc = parse_document(raw)
        except Exception:  # noqa: BLE001 - invalid entries plan no call
            continue
        key = module.make_idempotency_key(doc, "chunks")
        shard = next(i for i in range(3) if module.in_shard(key, f"{i}/3"))
        expected[shard] += max(1, len(chunk_text(clean_text(doc.content))))
    assert weights == expected and all(w > 0 for w in weights)


def test_a_module_that_cannot_shard_gives_no_estimate(tmp_path: Path) -> None:
    """A module whose in_shard raises (a student's step not done yet) gives None: the claims keep the shard order."""
    source = write_input(tmp_path / "in.json", make_documents(20, seed=3, max_bytes=1500))
    impl = tmp_path / "impl.py"
    impl.write_text("def make_idempotency_key(doc, layer):\n    return doc.id\n\n"
                    "def in_shard(key, shard):\n    raise NotImplementedError\n", encoding="utf-8")
    assert estimate(source, impl, "chunks", 2) is None
