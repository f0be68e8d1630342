"""The given pipeline: chunking, the degraded path, embeddings and the oracle."""

from __future__ import annotations

from batchlab.documents import Document
from batchlab.pipeline import (
    MODE_DEGRADED,
    MODE_FULL,
    chunk_text,
    clean_text,
    embed,
    expected_output,
    fixed_chunks,
    local_embed,
    output_matches,
)

TEXT = clean_text(" ".join(f"Sentence number {i} talks about checkpoints." for i in range(60)))


class TestChunking:
    def test_chunks_never_exceed_the_limit(self) -> None:
        assert all(len(c) <= 120 for c in chunk_text(TEXT, max_chars=120))

    def test_chunks_keep_whole_sentences_and_all_the_text(self) -> None:
        chunks = chunk_text(TEXT, max_chars=120)
        assert " ".join(chunks) == TEXT
        assert all(c.endswith(".") for c in chunks)

    def test_an_overlong_sentence_is_cut(self) -> None:
        assert chunk_text("x" * 250, max_chars=100) == ["x" * 100, "x" * 100, "x" * 50]

    def test_chinese_punctuation_ends_a_sentence_and_adds_no_space(self) -> None:
        chunks = chunk_text("检查点很重要。" * 10, max_chars=20)
        assert chunks == ["检查点很重要。检查点很重要。"] * 5

    def test_fixed_chunks_are_fixed_size(self) -> None:
        assert [len(c) for c in fixed_chunks("a" * 650, size=300)] == [300, 300, 50]


class TestEmbeddings:
    def test_embed_is_deterministic(self) -> None:
        assert embed("abc") == embed("abc") and embed("abc") != embed("abd")

    def test_local_embedding_differs_from_the_model(self) -> None:
        assert local_embed("abc") != embed("abc")


class TestOracle:
    def test_full_output_matches_and_degraded_output_matches_only_as_degraded(self) -> None:
        doc = Document(id="d", content=TEXT)
        full = expected_output(doc, MODE_FULL)
        degraded = expected_output(doc, MODE_DEGRADED)
        assert output_matches(doc, MODE_FULL, full["chunks"], full["vectors"])
        assert output_matches(doc, MODE_DEGRADED, degraded["chunks"], degraded["vectors"])
        assert not output_matches(doc, MODE_FULL, degraded["chunks"], degraded["vectors"])

    def test_a_missing_chunk_does_not_match(self) -> None:
        doc = Document(id="d", content=TEXT)
        full = expected_output(doc, MODE_FULL)
        assert not output_matches(doc, MODE_FULL, full["chunks"][:-1], full["vectors"][:-1])
