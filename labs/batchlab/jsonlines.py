"""The JSON Lines reader behind :mod:`batchlab.batchstream`: an optional header line, then a document per line.

Each line is its own JSON text, so a line that is not JSON rejects that document alone; the loader's
per-document rules (:func:`batchlab.streamentry.loader_checks`) apply as in a JSON file. Split from
:mod:`batchlab.streamreaders` (the JSON reader), which re-exports these names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from .doccheck import _SURROGATE_ESCAPE, MAX_DOCUMENT_BYTES, _DuplicateKeys, _object_pairs, oversize_bytes
from .docmodel import RejectedDocument
from .errors import BatchInputError
from .jsonwindow import MAX_VALUE_CHARS
from .streamentry import StreamEntry, _duplicate_key_error, check_header_batch_id, loader_checks, stream_entry

#: A JSON Lines line longer than this is refused unread (a document's JSON text is at most about six bytes a byte
#: of content, and the content at most ``MAX_DOCUMENT_BYTES``); shorter lines are decoded and measured exactly.
MAX_LINE_BYTES = MAX_VALUE_CHARS
#: The keys a JSON Lines header may hold.
HEADER_KEYS = frozenset({"header", "batch_id"})
_BOM = b"\xef\xbb\xbf"
#: What a blank line may hold.
_BLANK_CHARS = " \t\r\n"



class JsonLinesReader:
    """A JSON Lines batch: an optional header line, then one document per line."""

    def __init__(self, fh: IO[bytes], path: str, *, checks: bool = True,
                 start: tuple[int, int, int] | None = None) -> None:
        self.fh, self.path, self.checks = fh, path, checks
        self.batch_id: str | None = None
        self.offset, self.line_no, self.first_index = 0, 0, 0
        if start is not None:  # resume at entry ``index`` at ``byte`` (a line start) on ``line``: no header there
            self.first_index, self.offset, self.line_no = start[0], start[1], start[2] - 1
            fh.seek(self.offset)
            self._first = None
            return
        self._first = self._next_line()
        if self._first is not None:
            text, line, offset = self._first
            value = _header_value(text)
            if value is not None:
                self._first = None
                self._read_header(value, {"path": path, "line": line, "byte_offset": offset})

    def _read_header(self, value: Any, where: dict[str, Any]) -> None:
        if isinstance(value, _DuplicateKeys):
            raise _duplicate_key_error(value.duplicates, where)
        extra = sorted(map(str, set(value) - HEADER_KEYS))
        if extra:
            raise BatchInputError(
                f"the header line holds unknown key(s) {', '.join(map(repr, extra))}", code="invalid_header",
                details={**where, "unknown": extra, "allowed": sorted(HEADER_KEYS)},
                hints=['A header is {"header": true, "batch_id": "..."}; put documents on the lines after it.'])
        self.batch_id = check_header_batch_id(value.get("batch_id"), where)

    def _next_line(self) -> tuple[str, int, int] | None:
        """The next non-blank line as text with its number and byte offset (None at end of file)."""
        while True:
            start = self.offset
            blob = self.fh.readline(MAX_LINE_BYTES + 1)
            if not blob:
                return None
            self.line_no += 1
            self.offset += len(blob)
            if len(blob) > MAX_LINE_BYTES and not blob.endswith(b"\n"):
                self._skip_rest_of_line()
                return "", self.line_no, -start - 1  # an over-long line, marked by a negative offset
            skip = 3 if start == 0 and blob.startswith(_BOM) else 0
            try:
                text = blob[skip:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BatchInputError(
                    f"input file is not valid UTF-8 (line {self.line_no}, byte {start + skip + exc.start})",
                    code="invalid_utf8",
                    details={"path": self.path, "line": self.line_no, "byte_offset": start + skip + exc.start},
                    hints=["Re-encode the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)."]) from None
            if text[:1] not in _BLANK_CHARS or text.strip(_BLANK_CHARS):  # the first test settles a document's line
                return text, self.line_no, start + skip

    def _skip_rest_of_line(self) -> None:
        while True:
            blob = self.fh.readline(1 << 20)
            self.offset += len(blob)
            if not blob or blob.endswith(b"\n"):
                return

    def entries(self) -> Iterator[StreamEntry]:
        """Every document line; without ``checks`` (the validating pass) only lines that could be oversized are read.

        A line's content has at most as many bytes as the line (an escape is longer than what it stands for),
        and a line that is not JSON rejects only itself, so the validating pass need not decode shorter lines.
        """
        index = self.first_index
        line = self._first if self._first is not None else self._next_line()
        while line is not None:
            text, number, offset = line
            if offset < 0:
                offset = -offset - 1
                raw: Any = RejectedDocument(
                    {}, code="document_too_large", reason=f"line {number} is longer than {MAX_LINE_BYTES} bytes",
                    details={"line": number, "byte_offset": offset, "bytes": self.offset - offset})
            elif self.checks or self.offset - offset > MAX_DOCUMENT_BYTES:
                raw = jsonl_line_document(text, line=number, offset=offset)
            else:
                raw = None
            yield stream_entry(index, number, offset, self.offset - offset, raw, self.line_no + 1)
            index += 1
            line = self._next_line()


def _header_value(text: str) -> Any:
    """The decoded first line when it is a header (an object with ``"header": true``), else None."""
    if '"header"' not in text:
        return None
    try:
        value = json.loads(text, object_pairs_hook=_object_pairs)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value.get("header") is True else None


#: One decoder for every line: ``json.loads`` with a hook builds a decoder (and its scanner) per call.
_LINE_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs)
_LINE_SCAN: Any = _LINE_DECODER.scan_once  # type: ignore[attr-defined]
_BLANK: Any = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]


def _decode_line(text: str) -> Any:
    """``_LINE_DECODER.decode(text)``: its scanner called at once when the line is one JSON value (the common case).

    Anything else (no value, extra data) goes through ``decode`` itself, for its very error.
    """
    try:
        value, end = _LINE_SCAN(text, _BLANK(text, 0).end())
    except StopIteration:
        return _LINE_DECODER.decode(text)
    if _BLANK(text, end).end() != len(text):
        return _LINE_DECODER.decode(text)
    return value


def jsonl_line_document(text: str, *, line: int, offset: int) -> Any:
    """One line of a JSON Lines file as an entry: the document, or a rejection that names the line.

    A plain object with no surrogate escape in its line and a content within the size is what
    :func:`batchlab.streamentry.loader_checks` returns it as: returned at once (a million times a fold).
    """
    try:
        # json.loads' own check first (its message for a byte order mark mid-file), then the shared decoder
        value = json.loads(text) if text.startswith("\ufeff") else _decode_line(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an over-long integer, too deep
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else (
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc))
        return RejectedDocument({}, code="invalid_json", reason=f"line {line} (byte {offset}) is not valid JSON: {why}",
                                details={"line": line, "byte_offset": offset})
    maybe_surrogate = "\\u" in text and _SURROGATE_ESCAPE.search(text) is not None
    if type(value) is dict and not maybe_surrogate and oversize_bytes(value) is None:
        return value
    return loader_checks(value, maybe_surrogate=maybe_surrogate, where={"line": line, "byte_offset": offset})
