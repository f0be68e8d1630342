"""Streamed batch input: JSON Lines and a JSON array read one document at a time, with the loader's rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchlab import jsonwindow
from batchlab.batchstream import iter_batch, open_batch
from batchlab.documents import MAX_DOCUMENT_BYTES, RejectedDocument, load_batch, try_parse
from batchlab.errors import BatchInputError, InvalidDocumentError

GOOD = '{"id": "good", "content": "fine text"}'
LAST = '{"id": "last", "content": "the end", "metadata": {"n": 1.5, "big": 123456789012345678901234567890}}'

#: One entry per case, as raw JSON text (lone surrogates and repeated keys cannot be written with json.dumps),
#: and what the loader makes of it: the code that entry ends with (None: a valid document).
PER_DOCUMENT_CASES = {
    "valid": ('{"id": "a", "content": "检查点 text", "metadata": {"k": [1, null, true]}}', None),
    "lone surrogate in the content": ('{"id": "s", "content": "x\\ud800"}', "invalid_unicode"),
    "lone surrogate in a key": ('{"id": "k", "content": "x", "metadata": {"\\udc80": 1}}', "invalid_unicode"),
    "repeated key": ('{"id": "d", "id": "e", "content": "x"}', "duplicate_key"),
    "a number, not an object": ("42", "not_an_object"),
    "a list, not an object": ('[{"id": "in-a-list", "content": "x"}]', "not_an_object"),
    "no id": ('{"content": "orphan"}', "missing_id"),
    "content of the wrong type": ('{"id": "n", "content": 12345}', "wrong_type"),
    "NaN in metadata": ('{"id": "nan", "content": "x", "metadata": {"v": NaN}}', None),
    "a valid surrogate pair": ('{"id": "pair", "content": "\\ud83d\\ude00"}', None),
}


def write_formats(tmp_path: Path, entries: list[str], batch_id: str = "b-1") -> dict[str, Path]:
    """The same entries as a JSON object, a bare JSON array and a JSON Lines file with a header."""
    obj, arr, lines = tmp_path / "obj.json", tmp_path / "arr.json", tmp_path / "lines.jsonl"
    obj.write_text(f'{{"batch_id": "{batch_id}", "documents": [\n' + ",\n".join(entries) + "\n]}", encoding="utf-8")
    arr.write_text("[" + ", ".join(entries) + "]", encoding="utf-8")
    lines.write_text(json.dumps({"header": True, "batch_id": batch_id}) + "\n" + "\n".join(entries) + "\n",
                     encoding="utf-8")
    return {"obj": obj, "arr": arr, "jsonl": lines}


def readings(paths: dict[str, Path]) -> dict[str, list[Any]]:
    """Every way to read the files: load_batch on each, and the stream on each."""
    out: dict[str, list[Any]] = {}
    for name, path in paths.items():
        out[f"load_batch {name}"] = list(load_batch(path).documents)
        out[f"stream {name}"] = list(open_batch(path))
    return out


def outcome(raw: Any) -> str | None:
    """The code a processor's ``parse_document`` gives the entry (None: a valid document)."""
    parsed = try_parse(raw)
    return parsed.code if isinstance(parsed, InvalidDocumentError) else None


@pytest.mark.parametrize("case", sorted(PER_DOCUMENT_CASES))
def test_a_document_means_the_same_in_json_jsonl_and_the_streamed_array(tmp_path: Path, case: str) -> None:
    """Each per-document rule (surrogates, repeated keys, non-objects, invalid fields) gives the same entries
    through ``load_batch`` and the stream, on a JSON object, a JSON array and JSON Lines."""
    text, code = PER_DOCUMENT_CASES[case]
    results = readings(write_formats(tmp_path, [GOOD, text, LAST]))
    reference = results.pop("load_batch obj")
    assert [outcome(raw) for raw in reference] == [None, code, None]
    for name, docs in results.items():
        assert docs == reference, name
        assert [outcome(raw) for raw in docs] == [None, code, None], name
        assert [type(raw) for raw in docs] == [type(raw) for raw in reference], name


def test_an_oversized_document_refuses_the_batch_in_every_format(tmp_path: Path) -> None:
    """A document over the size limit refuses the whole batch, with its index, line and byte offset when streamed."""
    big = json.dumps({"id": "huge", "content": "检" * (MAX_DOCUMENT_BYTES // 3 + 10)}, ensure_ascii=False)
    paths = write_formats(tmp_path, [GOOD, big, LAST])
    for name, path in paths.items():
        for read in (load_batch, open_batch):
            with pytest.raises(BatchInputError) as info:
                read(path)
            assert info.value.code == "document_too_large", (name, read)
            assert info.value.details["documents"][0]["id"] == "huge"
        with pytest.raises(BatchInputError) as info:
            open_batch(path)
        where = info.value.details["documents"][0]
        assert where["index"] == 1 and path.read_bytes()[where["byte_offset"]:].startswith(b'{"id": "huge"')


class TestJsonLines:
    def test_a_malformed_line_rejects_that_document_alone_naming_its_line_and_byte(self, tmp_path: Path) -> None:
        """Bad JSON on one line is one rejected document (``invalid_json``); the lines around it are read."""
        path = tmp_path / "in.jsonl"
        path.write_text(f"{GOOD}\n{{\"id\": \"x\", \"content\": \n{LAST}\n", encoding="utf-8")
        docs = load_batch(path).documents
        assert [outcome(raw) for raw in docs] == [None, "invalid_json", None]
        bad = docs[1]
        assert isinstance(bad, RejectedDocument)
        assert bad.details == {"line": 2, "byte_offset": len(GOOD) + 1}
        assert "line 2" in bad.reason and f"byte {len(GOOD) + 1}" in bad.reason

    def test_a_byte_order_mark_on_a_later_line_is_refused_with_jsons_own_words(self, tmp_path: Path) -> None:
        """A BOM is skipped at the start of the file only; on a later line it rejects that line as json.loads did."""
        path = tmp_path / "in.jsonl"
        path.write_text(f"\ufeff{GOOD}\n\ufeff{LAST}\n", encoding="utf-8")
        docs = load_batch(path).documents
        assert [outcome(raw) for raw in docs] == [None, "invalid_json"]
        assert "Unexpected UTF-8 BOM" in docs[1].reason

    def test_the_header_line_names_the_batch_and_is_not_a_document(self, tmp_path: Path) -> None:
        path = tmp_path / "in.jsonl"
        path.write_text('{"header": true, "batch_id": "night-run"}\n' + GOOD + "\n", encoding="utf-8")
        header, docs = iter_batch(path)
        assert header.batch_id == "night-run" and header.format == "jsonl" and header.documents == 1
        assert [raw["id"] for raw in docs] == ["good"]
        assert load_batch(path).batch_id == "night-run"

    def test_without_a_header_every_line_is_a_document(self, tmp_path: Path) -> None:
        path = tmp_path / "in.ndjson"
        path.write_text(f"{GOOD}\n{LAST}\n", encoding="utf-8")
        batch = load_batch(path)
        assert batch.batch_id is None and [raw["id"] for raw in batch.documents] == ["good", "last"]

    @pytest.mark.parametrize(("first", "code"), [
        ('{"header": true, "batch_id": "b", "documents": 3}', "invalid_header"),
        ('{"header": true, "batch_id": "../etc"}', "invalid_batch_id"),
        ('{"header": true, "batch_id": "b\\ud800"}', "invalid_unicode"),
        ('{"header": true, "batch_id": "a", "batch_id": "b"}', "duplicate_key"),
    ])
    def test_a_bad_header_refuses_the_batch(self, tmp_path: Path, first: str, code: str) -> None:
        path = tmp_path / "in.jsonl"
        path.write_text(f"{first}\n{GOOD}\n", encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            open_batch(path)
        assert info.value.code == code and info.value.details["line"] == 1

    def test_blank_lines_are_skipped_and_keep_their_line_numbers(self, tmp_path: Path) -> None:
        path = tmp_path / "in.jsonl"
        path.write_bytes(b"\xef\xbb\xbf" + f"\n{GOOD}\r\n\n  \n{LAST}\n\n".encode())
        entries = list(open_batch(path).entries())
        assert [(e.index, e.line) for e in entries] == [(0, 2), (1, 5)]

    @pytest.mark.parametrize("body", ["", "\n\n", '{"header": true}\n'])
    def test_a_file_without_documents_is_an_empty_batch(self, tmp_path: Path, body: str) -> None:
        path = tmp_path / "in.jsonl"
        path.write_text(body, encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            load_batch(path)
        assert info.value.code == "empty_batch"

    def test_invalid_utf8_refuses_the_batch_with_its_line_and_byte(self, tmp_path: Path) -> None:
        path = tmp_path / "in.jsonl"
        path.write_bytes(f"{GOOD}\n".encode() + '{"id": "g", "content": "检查"}\n'.encode("gbk"))
        with pytest.raises(BatchInputError) as info:
            open_batch(path)
        assert info.value.code == "invalid_utf8" and info.value.details["line"] == 2
        assert info.value.details["byte_offset"] == len(GOOD) + 1 + len('{"id": "g", "content": "')


class TestStreamedJson:
    @pytest.mark.parametrize("text", [
        '{"documents": [\n  {"id": "a",, }]}',
        '{"docs": []}',
        '{"documents": {"id": "a"}}',
        '"just a string"',
        "[]",
        "",
        '{"batch_id": "../etc", "documents": [{"id": "a", "content": "x"}]}',
        '{"batch_id": "a", "batch_id": "b", "documents": [{"id": "a", "content": "x"}]}',
        '{"documents": [{"id": "a", "content": "x"}], "documents": [{"id": "a", "content": "x"}]}',
        '{"batch_id": "b\\ud800", "documents": [{"id": "a", "content": "x"}]}',
        '[{"id": "a", "content": "x"}] trailing',
        '[{"id": "a", "content": "x"}',
        '[{"id": "a", "content": "x"},]',
        '[{"id": "a", "content": "x", "metadata": {"n": ' + "9" * 5000 + "}}]",
        "[" * 100_000 + "]" * 100_000,
    ])
    def test_a_whole_batch_error_is_the_one_load_batch_gives_and_comes_before_any_document(
            self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "in.json"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(BatchInputError) as expected:
            load_batch(path)
        with pytest.raises(BatchInputError) as got:
            open_batch(path)
        assert got.value.code == expected.value.code
        assert set(got.value.to_dict()["error"]) == {"code", "message", "details", "hints"}

    def test_a_syntax_error_names_its_line_and_byte_offset(self, tmp_path: Path) -> None:
        path = tmp_path / "in.json"
        path.write_text('[\n{"id": "a", "content": "检"},\n{"id": "b" "content": "x"}\n]', encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            open_batch(path)
        details = info.value.details
        assert details["line"] == 3 and path.read_bytes()[details["byte_offset"]:].startswith(b'"content"')

    def test_invalid_utf8_is_refused_at_the_byte_load_batch_names(self, tmp_path: Path) -> None:
        path = tmp_path / "in.json"
        path.write_bytes('[{"id": "a", "content": "检查点"}]'.encode("gbk"))
        with pytest.raises(BatchInputError) as expected:
            load_batch(path)
        with pytest.raises(BatchInputError) as got:
            open_batch(path)
        assert got.value.code == "invalid_utf8"
        assert got.value.details["byte_offset"] == expected.value.details["byte_offset"]

    @pytest.mark.parametrize("suffix", [".json", ".jsonl"])
    def test_a_file_that_is_not_utf8_is_refused_as_such_whatever_comes_before(self, tmp_path: Path,
                                                                             suffix: str) -> None:
        """As ``load_batch``: the encoding is checked first, so broken JSON before a bad byte is not the error."""
        path = tmp_path / f"in{suffix}"
        path.write_bytes(b'{"id": "a",, "content": "x"}\n' + b"[" * 200 + b"\n" + b'{"id": "\xff"}\n')
        with pytest.raises(BatchInputError) as got:
            open_batch(path)
        assert got.value.code == "invalid_utf8" and got.value.details["line"] == 3
        assert got.value.details["byte_offset"] == path.read_bytes().index(b"\xff")
        with pytest.raises(BatchInputError) as expected:
            load_batch(path)
        assert expected.value.code == "invalid_utf8"

    def test_a_batch_id_after_the_documents_is_in_the_header(self, tmp_path: Path) -> None:
        path = tmp_path / "in.json"
        path.write_text('{"documents": [' + GOOD + '], "batch_id": "late"}', encoding="utf-8")
        assert open_batch(path).header.batch_id == "late"
        assert open_batch(path, validate=False).header.batch_id is None  # known only after reading the documents

    @pytest.mark.parametrize("chunk", [1, 2, 3, 5, 16, 64])
    def test_any_window_size_reads_what_load_batch_reads(self, tmp_path: Path, chunk: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """Values cut by the window's edge (a number, a multi-byte character, an escape) decode whole."""
        monkeypatch.setattr(jsonwindow, "CHUNK_BYTES", chunk)
        entries = [text for text, _ in PER_DOCUMENT_CASES.values()] + [GOOD, LAST, "1.25e3", '"\\u00e9\\n"', "-0"]
        paths = write_formats(tmp_path, entries)
        for name, path in paths.items():
            assert list(open_batch(path)) == load_batch(path).documents, name


class TestPositions:
    @pytest.mark.parametrize("name", ["obj", "arr", "jsonl"])
    def test_each_entry_points_at_its_own_bytes(self, tmp_path: Path, name: str) -> None:
        """Index, line and byte offset name the entry's JSON text in the file (a resume can seek to it)."""
        entries = [GOOD, '{"id": "中文", "content": "多字节"}', LAST]
        path = write_formats(tmp_path, entries)[name]
        blob = path.read_bytes()
        got = list(open_batch(path).entries())
        assert [e.index for e in got] == [0, 1, 2]
        for entry, text in zip(got, entries, strict=True):
            assert blob[entry.offset:entry.offset + entry.length].strip() == text.encode()
            assert blob[:entry.offset].count(b"\n") + 1 == entry.line

    @pytest.mark.parametrize("suffix", [".json", ".jsonl"])
    def test_the_stream_has_read_only_a_window_when_it_hands_out_the_first_document(
            self, tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Memory does not follow the file: the first document comes after reading about one window of it."""
        monkeypatch.setattr(jsonwindow, "CHUNK_BYTES", 4096)
        docs = [{"id": f"d{i}", "content": "text " * 40} for i in range(8000)]  # 1.8 MB
        path = tmp_path / f"in{suffix}"
        if suffix == ".json":
            path.write_text(json.dumps(docs), encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
        opened: list[Any] = []
        real_open = open

        def spy(*args: Any, **kwargs: Any) -> Any:
            fh = real_open(*args, **kwargs)
            opened.append(fh)
            return fh

        stream = open_batch(path, validate=False)
        monkeypatch.setattr("builtins.open", spy)
        it = iter(stream)
        assert next(it)["id"] == "d0"
        assert opened[0].tell() <= 2 * 4096  # one window (or one line) consumed of 1.8 MB
        assert sum(1 for _ in it) == 7999


class TestLimits:
    def test_a_stream_has_no_document_limit_and_load_batch_keeps_its_own(self, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """``MAX_BATCH_DOCUMENTS`` bounds the list ``load_batch`` holds; the stream reads past it."""
        monkeypatch.setattr("batchlab.batchstream.MAX_BATCH_DOCUMENTS", 3)
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps({"id": f"d{i}", "content": "x"}) + "\n" for i in range(5)),
                        encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            load_batch(path)
        assert info.value.code == "batch_too_large" and info.value.details["documents"] == 5
        header, docs = iter_batch(path)
        assert header.documents == 5 and len(list(docs)) == 5

    def test_an_overlong_line_refuses_the_batch_without_being_decoded(self, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("batchlab.jsonlines.MAX_LINE_BYTES", 1000)
        path = tmp_path / "in.jsonl"
        path.write_text(f'{GOOD}\n{{"id": "long", "content": "{"y" * 5000}"}}\n{LAST}\n', encoding="utf-8")
        with pytest.raises(BatchInputError) as info:
            open_batch(path)
        assert info.value.code == "document_too_large"
        assert info.value.details["documents"][0] == {"index": 1, "line": 2, "byte_offset": len(GOOD) + 1,
                                                      "bytes": 5000 + len('{"id": "long", "content": ""}\n')}

    def test_without_validation_an_oversized_document_is_rejected_alone(self, tmp_path: Path) -> None:
        """A file that changed after it was validated cannot stop a batch half done: the document is rejected."""
        big = json.dumps({"id": "huge", "content": "x" * (MAX_DOCUMENT_BYTES + 1)})
        path = write_formats(tmp_path, [GOOD, big, LAST])["jsonl"]
        docs = list(open_batch(path, validate=False))
        assert [outcome(raw) for raw in docs] == [None, "document_too_large", None]
        assert docs[1] == {"id": "huge"}  # the content is not kept


def test_a_remembered_validation_keeps_a_batch_id_written_after_the_documents(tmp_path: Path) -> None:
    """open_checked with a matching memo skips the validating read, and still knows a batch id that follows the
    documents (the memo carries it): a resume must not name its checkpoint after another batch id."""
    from batchlab import batchstream
    from batchlab.batchstream import open_checked

    path = tmp_path / "in.json"
    path.write_text('{"documents": [' + GOOD + "], \"batch_id\": \"late-id\"}", encoding="utf-8")
    memo = tmp_path / "checked.json"
    assert open_checked(path, memo).header.batch_id == "late-id"

    def no_read(*_: Any) -> int:
        raise AssertionError("validated again")

    original = batchstream._validate
    batchstream._validate = no_read  # type: ignore[assignment]
    try:
        again = open_checked(path, memo)
    finally:
        batchstream._validate = original  # type: ignore[assignment]
    assert (again.header.batch_id, len(again)) == ("late-id", 1)
