"""The streamed inventory (iter_entries, count_input, iter_unique) answers what Inventory answers, one entry at a time."""

from __future__ import annotations

import gc
import json
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlab.batchstream import open_batch
from batchlab.documents import Batch, load_batch
from batchlab.examples import make_documents, write_documents
from batchlab.inventory import Inventory, count_input, iter_entries, iter_unique, spills
from batchlab.pipeline import planned_calls


class Raw(dict):  # type: ignore[type-arg]
    """A raw document that can be watched by a weak reference (a plain dict cannot)."""


class Watched:
    """An iterable of documents that fails the moment more than ``limit`` of the ones it handed out are still alive.

    A reader that lists the batch (or keeps every raw entry, as Inventory does) keeps them all alive; a
    streaming reader drops each before it takes the next: this proves memory does not grow with N by the code
    path, not by timing or by measuring the heap.
    """

    def __init__(self, docs: list[dict[str, Any]], limit: int = 3) -> None:
        self.docs = docs
        self.limit = limit
        self.most_alive = 0

    def __iter__(self) -> Iterator[Raw]:
        alive: list[weakref.ref[Raw]] = []
        for doc in self.docs:
            alive = [r for r in alive if r() is not None]
            if len(alive) > self.limit:  # garbage in a reference cycle (a parse error's traceback) is not held
                gc.collect()
                alive = [r for r in alive if r() is not None]
            self.most_alive = max(self.most_alive, len(alive))
            if len(alive) > self.limit:
                raise AssertionError(f"{len(alive)} documents handed out earlier are still held")
            raw = Raw(doc)
            alive.append(weakref.ref(raw))
            yield raw
            del raw


def batch(n: int = 300) -> list[dict[str, Any]]:
    return make_documents(n, seed=11, min_bytes=60, max_bytes=300, duplicates=12, invalid=6)


@pytest.mark.parametrize("on_disk", [False, True])
def test_count_input_counts_what_the_inventory_counts(on_disk: bool) -> None:
    """N, valid, unique, rejected, duplicates, reasons and sources equal Inventory's, in memory or with keys on disk."""
    docs = batch()
    inv = Inventory.of(docs)
    counts = count_input(docs, on_disk=on_disk)
    assert (counts.total, counts.valid, counts.unique, counts.rejected, counts.duplicates_in_input) == (
        inv.total, inv.valid, inv.unique, inv.rejected, inv.duplicates_in_input)
    assert counts.reasons == inv.reasons() and counts.duplicates_in_input > 0 and counts.rejected > 0
    assert list(counts.sources.items()) == list(Counter(d.source for d in inv.valid_documents()).items())


def test_iter_unique_yields_the_first_document_of_each_identity_in_input_order() -> None:
    """iter_unique is Inventory.unique_documents streamed, and planned_calls takes either."""
    docs = batch()
    assert list(iter_unique(docs)) == Inventory.of(docs).unique_documents()
    assert planned_calls(iter_unique(docs)) == planned_calls(Batch(documents=docs))


def test_the_streamed_folds_hold_one_document_at_a_time() -> None:
    """count_input, iter_unique and iter_entries drop each raw document before they take the next."""
    docs = batch()
    for fold in (lambda w: count_input(w), lambda w: sum(1 for _ in iter_unique(w)),
                 lambda w: sum(1 for _ in iter_entries(w))):
        watched = Watched(docs)
        fold(watched)
        assert watched.most_alive <= 3
    with pytest.raises(AssertionError, match="still held"):
        Inventory.of(Watched(docs))  # the list-based inventory keeps every entry: the watch catches it


def test_a_jsonl_and_a_json_file_of_the_same_batch_count_the_same(tmp_path: Path) -> None:
    """The same documents as JSON Lines and as a JSON array give the same counts, identities and reasons."""
    docs = batch()
    lines, array = tmp_path / "b.jsonl", tmp_path / "b.json"
    write_documents(lines, docs, format="jsonl")
    array.write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    a, b = count_input(open_batch(lines)), count_input(open_batch(array))
    assert a == b
    assert [d.id for d in iter_unique(open_batch(lines))] == [d.id for d in iter_unique(open_batch(array))]
    assert a.unique == load_batch(array).inventory().unique


def test_a_malformed_line_is_one_rejected_entry_and_the_rest_counts_as_before(tmp_path: Path) -> None:
    """A JSON Lines file with one line that is not JSON: one more entry, rejected invalid_json; the others unchanged."""
    docs = make_documents(40, seed=2, min_bytes=60, max_bytes=200, duplicates=0, invalid=0, empty=0)
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_documents(good, docs, format="jsonl")
    text = good.read_text(encoding="utf-8").splitlines(keepends=True)
    bad.write_text("".join(text[:10] + ['{"id": "broken", "content": \n'] + text[10:]), encoding="utf-8")
    before, after = count_input(open_batch(good)), count_input(open_batch(bad))
    assert (after.total, after.valid, after.unique) == (before.total + 1, before.valid, before.unique)
    assert after.reasons == {"invalid_json": 1}


def test_spills_only_past_the_fold_threshold() -> None:
    """A batch's identities go to a file only past SPILL_KEYS entries (or when the count is unknown: no)."""
    from batchlab.fold_store import SPILL_KEYS

    assert not spills(None) and not spills(SPILL_KEYS) and spills(SPILL_KEYS + 1)


def test_load_batch_still_reads_the_same_documents(tmp_path: Path) -> None:
    """The list loader stays as it was for the callers that keep a list (the dashboard's small batches)."""
    docs = batch(50)
    path = tmp_path / "b.jsonl"
    write_documents(path, docs, format="jsonl")
    assert [e.ident for e in iter_entries(open_batch(path))] == [e.ident for e in load_batch(path).inventory().entries]
