"""Batch input: loading, batch-level rejection, per-document validation, identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlab.documents import (
    MAX_DOCUMENT_BYTES,
    Document,
    batch_from_data,
    content_hash,
    ident_of,
    load_batch,
    normalize_id,
    normalize_text,
    parse_document,
)
from batchlab.errors import BatchInputError, InvalidDocumentError


def write(tmp_path: Path, payload: object, name: str = "in.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    return path


class TestLoadBatch:
    def test_accepts_an_object_with_documents_and_a_batch_id(self, tmp_path: Path) -> None:
        batch = load_batch(write(tmp_path, {"batch_id": "b-1", "documents": [{"id": "a", "content": "x"}]}))
        assert batch.batch_id == "b-1" and len(batch) == 1

    def test_accepts_a_bare_list(self, tmp_path: Path) -> None:
        assert len(load_batch(write(tmp_path, [{"id": "a", "content": "x"}, {"id": "b", "content": "y"}]))) == 2

    @pytest.mark.parametrize(
        ("payload", "code"),
        [
            ({"docs": []}, "missing_field"),
            ({"documents": {"id": "a"}}, "wrong_type"),
            ("just a string", "wrong_type"),
            ([], "empty_batch"),
            ({"batch_id": "../etc", "documents": [{"id": "a", "content": "x"}]}, "invalid_batch_id"),
        ],
    )
    def test_rejects_a_malformed_batch_with_a_classified_error(self, tmp_path: Path, payload: object, code: str) -> None:
        with pytest.raises(BatchInputError) as info:
            load_batch(write(tmp_path, payload))
        assert info.value.code == code

    def test_rejects_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(BatchInputError) as info:
            load_batch(tmp_path / "nope.json")
        assert info.value.to_dict()["error"]["code"] == "input_not_found"

    def test_rejects_broken_json_with_line_and_column(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.json"
        path.write_text('{"documents": [\n  {"id": "a",, }]}', encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            load_batch(path)
        assert info.value.code == "invalid_json" and info.value.details["line"] == 2

    def test_rejects_invalid_utf8_with_the_byte_offset(self, tmp_path: Path) -> None:
        path = tmp_path / "gbk.json"
        path.write_bytes('[{"id": "a", "content": "检查点"}]'.encode("gbk"))
        with pytest.raises(BatchInputError) as info:
            load_batch(path)
        assert info.value.code == "invalid_utf8" and info.value.details["byte_offset"] > 0

    def test_rejects_the_whole_batch_when_one_document_is_over_the_size_limit(self, tmp_path: Path) -> None:
        big = "x" * (10 * 1024 * 1024)
        path = write(tmp_path, [{"id": "ok", "content": "fine"}, {"id": "huge", "content": big}])
        with pytest.raises(BatchInputError) as info:
            load_batch(path)
        err = info.value.to_dict()["error"]
        assert err["code"] == "document_too_large"
        assert err["details"]["documents"][0]["id"] == "huge" and err["hints"]

    def test_counts_utf8_bytes_not_characters_for_the_size_limit(self) -> None:
        under = "检" * (MAX_DOCUMENT_BYTES // 3 - 10)  # 3 bytes a character, just under the limit
        over = "检" * (MAX_DOCUMENT_BYTES // 3 + 10)
        batch_from_data([{"id": "a", "content": under}])
        with pytest.raises(BatchInputError):
            batch_from_data([{"id": "a", "content": over}])

    def test_error_has_the_unified_structure(self, tmp_path: Path) -> None:
        with pytest.raises(BatchInputError) as info:
            load_batch(tmp_path)
        payload = info.value.to_dict()
        assert set(payload) == {"error"}
        assert set(payload["error"]) == {"code", "message", "details", "hints"}


class TestParseDocument:
    @pytest.mark.parametrize(
        ("raw", "code"),
        [
            ("not an object", "not_an_object"),
            ({"content": "x"}, "missing_id"),
            ({"id": "  ", "content": "x"}, "missing_id"),
            ({"id": 7, "content": "x"}, "wrong_type"),
            ({"id": "a"}, "missing_content"),
            ({"id": "a", "content": 12345}, "wrong_type"),
            ({"id": "a", "content": " \n\t "}, "empty_content"),
            ({"id": "a", "content": "x", "metadata": []}, "wrong_type"),
        ],
    )
    def test_classifies_an_invalid_document(self, raw: object, code: str) -> None:
        with pytest.raises(InvalidDocumentError) as info:
            parse_document(raw)
        assert info.value.code == code

    def test_returns_a_document_with_defaults(self) -> None:
        doc = parse_document({"id": "a", "content": "hello"})
        assert doc == Document(id="a", content="hello", source="default", title="", metadata={})


class TestIdentity:
    def test_id_is_trimmed_and_case_folded(self) -> None:
        assert normalize_id("  DOC-7 ") == normalize_id("doc-7") == "doc-7"

    def test_text_is_nfc_normalized_and_whitespace_collapsed(self) -> None:
        decomposed = "Cafe\u0301  au\n\tlait\u3000"
        assert normalize_text(decomposed) == "Caf\u00e9 au lait"

    def test_duplicates_that_differ_in_id_case_or_whitespace_share_an_identity(self) -> None:
        a = Document(id="doc-1", content="A  text.\n", source="wiki", metadata={"updated_at": "1"})
        b = Document(id=" DOC-1", content="A text.", source="wiki", metadata={"updated_at": "2"})
        assert ident_of(a) == ident_of(b)

    def test_a_content_change_changes_the_identity(self) -> None:
        a = Document(id="doc-1", content="A text.")
        assert ident_of(a) != ident_of(Document(id="doc-1", content="A text!"))
        assert content_hash("A text.") != content_hash("A text!")
