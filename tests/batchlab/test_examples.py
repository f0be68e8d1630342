"""The committed example input has what the lesson asks of it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from batchlab.documents import Document, ident_of, load_batch, try_parse
from batchlab.examples import example_documents, make_documents


def test_the_committed_example_is_what_the_generator_writes(example_input_path: Path) -> None:
    data = json.loads(example_input_path.read_text(encoding="utf-8"))
    assert data["documents"] == example_documents()


def test_the_example_mixes_sizes_languages_duplicates_and_invalid_documents(example_input_path: Path) -> None:
    batch = load_batch(example_input_path)
    parsed = [try_parse(raw) for raw in batch.documents]
    valid = [d for d in parsed if isinstance(d, Document)]
    sizes = [len(d.content.encode("utf-8")) for d in valid]
    assert len(batch) >= 120
    assert min(sizes) <= 200 and 30_000 <= max(sizes) <= 50_000
    langs = Counter(d.metadata.get("lang") for d in valid)
    assert langs["zh"] >= 20 and langs["en"] >= 20
    assert len(valid) - len({ident_of(d) for d in valid}) >= 3
    ids = [d.id for d in valid]
    assert any(i != i.strip() for i in ids) and any(i != i.lower() for i in ids)
    codes = Counter(p.code for p in parsed if not isinstance(p, Document))
    assert codes["empty_content"] >= 1 and codes["missing_id"] + codes["wrong_type"] >= 2


def test_generated_inputs_scale_with_duplicates_and_invalid_entries() -> None:
    docs = make_documents(5000, seed=2, max_bytes=500)
    parsed = [try_parse(raw) for raw in docs]
    invalid = sum(not isinstance(p, Document) for p in parsed)
    valid = [p for p in parsed if isinstance(p, Document)]
    assert len(docs) == 5000 and invalid == 51
    assert len(valid) - len({ident_of(d) for d in valid}) == 100
