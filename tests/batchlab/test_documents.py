"""Batch input: loading, batch-level rejection, per-document validation, identity."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from batchlab.documents import (
    MAX_DOCUMENT_BYTES,
    Document,
    Inventory,
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

    def test_the_identity_cache_answers_as_the_function_would(self) -> None:
        """``ident_of`` remembers recent documents by source, id and content: a change of any one is a new answer."""
        base = Document(id="Doc-9", content="Same text.", source="wiki")
        first = ident_of(base)
        for other in (Document(id="doc-9", content="Same text.", source="faq"),
                      Document(id="doc-9 ", content="Same text.", source="wiki"),
                      Document(id="Doc-9", content="Same  text.", source="wiki"),
                      Document(id="Doc-9", content="Other text.", source="wiki"),
                      Document(id="Doc-9", content="Long text. " * 3000, source="wiki")):
            expected = f"{other.source}|{normalize_id(other.id)}|{content_hash(other.content)[:16]}"
            assert ident_of(other) == expected
        assert ident_of(base) == first == f"wiki|doc-9|{content_hash('Same text.')[:16]}"


def write_bytes(tmp_path: Path, blob: bytes, name: str = "in.json") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def refusal(path: Path) -> BatchInputError:
    with pytest.raises(BatchInputError) as info:
        load_batch(path)
    json.loads(info.value.to_json(), parse_constant=lambda c: pytest.fail(f"{c} in strict JSON"))
    return info.value


class TestMalformedInput:
    """Each case the issue found ending in a traceback now ends in the unified error (issue 14)."""

    def test_nesting_too_deep_for_the_parser_is_invalid_json(self, tmp_path: Path) -> None:
        error = refusal(write_bytes(tmp_path, b"[" * 100_000 + b"]" * 100_000))
        assert error.code == "invalid_json" and "nested too deeply" in error.message

    def test_an_integer_beyond_the_digit_limit_is_invalid_json(self, tmp_path: Path) -> None:
        blob = b'{"documents": [{"id": "a", "content": "x", "metadata": {"n": ' + b"9" * 5000 + b"}}]}"
        error = refusal(write_bytes(tmp_path, blob))
        assert error.code == "invalid_json" and "4300" in error.message

    def test_a_lone_surrogate_in_the_batch_id_refuses_the_batch(self, tmp_path: Path) -> None:
        error = refusal(write_bytes(tmp_path, b'{"batch_id": "b\\ud800", "documents": [{"id": "a", "content": "x"}]}'))
        assert error.code == "invalid_unicode"
        assert "\\ud800" in error.to_json()  # echoed escaped, printable on any terminal
        error.to_json().encode("utf-8")

    @pytest.mark.parametrize("field", ["id", "source", "content", "title", "metadata"])
    def test_a_lone_surrogate_inside_a_document_rejects_that_document_alone(self, tmp_path: Path, field: str) -> None:
        bad = {"id": "bad", "content": "text", "source": "s", "title": "t", "metadata": {"k": "v"}}
        blob = json.dumps({"documents": [bad, {"id": "good", "content": "fine"}]})
        value = '{"k": "\\ud800"}' if field == "metadata" else '"x\\udc80"'
        blob = blob.replace(json.dumps(bad[field]), value, 1)
        batch = load_batch(write_bytes(tmp_path, blob.encode()))
        with pytest.raises(InvalidDocumentError) as info:
            parse_document(batch.documents[0])
        assert info.value.code == "invalid_unicode" and field in info.value.message
        assert parse_document(batch.documents[1]).id == "good"
        # every string of the rejected document is printable UTF-8: a processor can record its id
        json.dumps(batch.documents[0], ensure_ascii=False).encode("utf-8")

    def test_a_utf8_byte_order_mark_is_accepted(self, tmp_path: Path) -> None:
        batch = load_batch(write_bytes(tmp_path, b"\xef\xbb\xbf" + json.dumps(
            {"batch_id": "bom", "documents": [{"id": "a", "content": "x"}]}).encode()))
        assert batch.batch_id == "bom" and len(batch) == 1

    def test_a_duplicate_batch_id_key_refuses_the_batch(self, tmp_path: Path) -> None:
        error = refusal(write_bytes(tmp_path, b'{"batch_id": "a", "batch_id": "b", "documents": [{"id": "a", '
                                                 b'"content": "x"}]}'))
        assert error.code == "duplicate_key" and error.details["duplicates"] == ["batch_id"]

    def test_a_document_with_a_duplicate_key_is_rejected_alone(self, tmp_path: Path) -> None:
        batch = load_batch(write_bytes(tmp_path, b'[{"id": "a", "id": "b", "content": "x"}, {"id": "c", '
                                                 b'"content": "y"}]'))
        with pytest.raises(InvalidDocumentError) as info:
            parse_document(batch.documents[0])
        assert info.value.code == "duplicate_key"
        assert parse_document(batch.documents[1]).id == "c"

    @pytest.mark.student_env  # root reads a chmod-0 file: only an unprivileged user sees the refusal
    def test_an_unreadable_file_is_input_unreadable(self, tmp_path: Path) -> None:
        path = write(tmp_path, [{"id": "a", "content": "x"}])
        path.chmod(0)
        try:
            if os.access(path, os.R_OK):
                pytest.skip("root reads any file")
            assert refusal(path).code == "input_unreadable"
        finally:
            path.chmod(0o644)

    def test_a_read_refused_by_the_system_is_input_unreadable(self, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        path = write(tmp_path, [{"id": "a", "content": "x"}])

        def refuse(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Path, "read_bytes", refuse)  # as root, chmod 0 does not stop a read
        error = refusal(path)
        assert error.code == "input_unreadable" and error.details["errno"] == "EACCES"

    def test_a_symlink_loop_is_named_as_such(self, tmp_path: Path) -> None:
        (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
        (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
        error = refusal(tmp_path / "a.json")
        assert error.code == "input_symlink_loop" and "symlink loop" in error.message

    def test_a_dangling_symlink_says_where_it_points(self, tmp_path: Path) -> None:
        (tmp_path / "in.json").symlink_to(tmp_path / "gone.json")
        error = refusal(tmp_path / "in.json")
        assert error.code == "input_not_found" and "gone.json" in error.message

    @pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
    def test_a_non_finite_batch_id_is_echoed_as_strict_json(self, tmp_path: Path, constant: bytes) -> None:
        error = refusal(write_bytes(tmp_path, b'{"batch_id": ' + constant + b', "documents": [{"id": "a", '
                                                b'"content": "x"}]}'))
        assert error.code == "invalid_batch_id"
        assert json.loads(error.to_json())["error"]["details"]["batch_id"] == constant.decode()

    def test_a_huge_batch_id_is_echoed_cut(self, tmp_path: Path) -> None:
        error = refusal(write(tmp_path, {"batch_id": "x" * 1_000_000, "documents": [{"id": "a", "content": "x"}]}))
        assert len(error.to_json()) < 5000


class TestInventory:
    ENTRIES = [
        {"id": "a", "content": "Alpha text."},
        {"id": " A ", "content": "Alpha   text."},  # the same identity: id up to case and spaces, text up to spacing
        {"content": "no id"},
        {"id": "b", "content": "Beta text."},
        {"id": "c", "content": ""},
    ]

    def test_the_counts_of_the_lesson_come_from_one_fold(self) -> None:
        """N entries, U identities, R invalid, and the re-sent valid entries, as every reader counts them."""
        inv = Inventory.of(self.ENTRIES)
        assert (inv.total, inv.unique, inv.valid, inv.rejected, inv.duplicates_in_input) == (5, 2, 3, 2, 1)

    def test_the_first_occurrence_of_an_identity_is_kept(self) -> None:
        """A re-sent document folds into the first one, whose id names the identity."""
        inv = Inventory.of(self.ENTRIES)
        assert [d.id for d in inv.unique_documents()] == ["a", "b"]
        assert [d.id for d in inv.valid_documents()] == ["a", " A ", "b"]
        assert inv.first_id(ident_of(parse_document(self.ENTRIES[1]))) == "a"

    def test_invalid_entries_keep_their_position_and_their_code(self) -> None:
        """The board names an invalid entry by its index; the report counts them by code."""
        inv = Inventory.of(self.ENTRIES)
        assert [(e.index, e.error.code if e.error else None) for e in inv.invalid()] == [
            (2, "missing_id"), (4, "empty_content")]
        assert inv.reasons() == {"missing_id": 1, "empty_content": 1}

    def test_a_batch_folds_through_the_same_inventory(self, tmp_path: Path) -> None:
        """``Batch.unique_documents()`` is the inventory's, so the pipeline's plan and the metrics agree."""
        batch = load_batch(write(tmp_path, self.ENTRIES))
        assert batch.unique_documents() == Inventory.of(self.ENTRIES).unique_documents()


@pytest.mark.parametrize("raw", [
    {"id": "a", "content": "text"}, {"id": " A ", "content": " t ", "source": "", "title": "T", "metadata": {"k": [1]}},
    {"id": "a", "content": "   "}, {"id": "  ", "content": "x"}, {"id": 7, "content": "x"}, {"id": "a", "content": None},
    {"id": "a"}, {"id": "a", "content": "x", "source": None}, {"id": "a", "content": "x", "title": 3},
    {"id": "a", "content": "x", "metadata": []}, {"id": "a", "content": "x", "source": "web", "extra": 1},
])
def test_a_plain_dict_parses_as_the_rules_one_by_one_parse_it(raw: dict[str, Any]) -> None:
    """The plain-dict fast path gives what the rules give the same fields behind another Mapping: a document or the code."""
    from types import MappingProxyType

    from batchlab.docmodel import try_parse

    fast, ruled = try_parse(dict(raw)), try_parse(MappingProxyType(raw))
    if isinstance(ruled, Document):
        assert isinstance(fast, Document) and fast == ruled and repr(fast) == repr(ruled)
        with pytest.raises(AttributeError):
            fast.id = "other"  # type: ignore[misc]
    else:
        assert not isinstance(fast, Document) and fast.code == ruled.code
