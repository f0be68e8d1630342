"""The two readers behind :mod:`batchlab.batchstream`: a JSON file through a window, a JSON Lines file by line.

Each reader is made on an open binary file, reads the batch's head at once (the JSON object's keys
before ``documents``, or the JSON Lines header line), so ``batch_id`` is known before the first
document, and then yields :class:`StreamEntry` values, one decoded document at a time. Both apply
:func:`loader_checks`, the loader's per-document rules, so a document means the same in every format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from .batchfile import (
    _SURROGATE_ESCAPE,
    MAX_DOCUMENT_BYTES,
    _checked,
    _DuplicateKeys,
    _object_pairs,
    check_batch_id,
    oversize_bytes,
)
from .docmodel import RejectedDocument, has_lone_surrogate
from .errors import BatchInputError
from .jsonwindow import MAX_VALUE_CHARS, JsonWindow

#: A JSON Lines line longer than this is refused unread (a document's JSON text is at most about six bytes a byte
#: of content, and the content at most ``MAX_DOCUMENT_BYTES``); shorter lines are decoded and measured exactly.
MAX_LINE_BYTES = MAX_VALUE_CHARS
#: The keys a JSON Lines header may hold.
HEADER_KEYS = frozenset({"header", "batch_id"})
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class StreamEntry:
    """One entry of a streamed batch and where it sits in the file."""

    #: Position among the batch's documents (0-based), as in ``Batch.documents``.
    index: int
    #: The line (1-based) on which the entry starts.
    line: int
    #: The byte offset of its first byte, and the bytes of its JSON text (a JSON Lines entry: with its line end).
    offset: int
    length: int
    #: The raw document as a processor receives it, or a :class:`RejectedDocument`.
    raw: Any
    #: The line on which the entry's JSON text ends (a JSON Lines entry: the next line, after its line end), so
    #: ``(offset + length, end_line)`` is where reading may resume after it (:meth:`BatchStream.entries`).
    end_line: int = 0


def loader_checks(value: Any, *, maybe_surrogate: bool, where: dict[str, Any]) -> Any:
    """The loader's per-document checks on one decoded entry (those of ``batch_from_data``)."""
    raw = _checked(value) if maybe_surrogate or isinstance(value, _DuplicateKeys) else value
    size = oversize_bytes(raw)
    if size is None:
        return raw
    return RejectedDocument({"id": raw.get("id")}, code="document_too_large",
                            reason=f"the document has {size} bytes of content, more than {MAX_DOCUMENT_BYTES}",
                            details={"id": raw.get("id"), "bytes": size, **where})


def check_header_batch_id(value: Any, where: dict[str, Any]) -> str | None:
    """The batch id of a header (None when absent), or the loader's error for a bad one."""
    if value is None:
        return None
    if isinstance(value, str) and has_lone_surrogate(value):
        raise BatchInputError(
            "the batch id holds a lone surrogate (an escape such as \\ud800 that is not valid Unicode)",
            code="invalid_unicode", details={**where, "field": "batch_id", "batch_id": value},
            hints=["Use letters, digits, '.', '_' and '-' in the batch id."])
    try:
        return check_batch_id(value)
    except BatchInputError as exc:
        exc.details.update(where)
        raise


def _duplicate_key_error(keys: list[str], where: dict[str, Any]) -> BatchInputError:
    return BatchInputError(
        f"the batch object repeats the key(s) {', '.join(map(repr, keys))}", code="duplicate_key",
        details={**where, "duplicates": keys},
        hints=["JSON parsers keep only the last of repeated keys, silently; write each key once."])


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
            if text.strip(" \t\r\n"):
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
            yield StreamEntry(index, number, offset, self.offset - offset, raw, self.line_no + 1)
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


def jsonl_line_document(text: str, *, line: int, offset: int) -> Any:
    """One line of a JSON Lines file as an entry: the document, or a rejection that names the line."""
    where = {"line": line, "byte_offset": offset}
    try:
        # json.loads' own check first (its message for a byte order mark mid-file), then the shared decoder
        value = json.loads(text) if text.startswith("\ufeff") else _LINE_DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an over-long integer, too deep
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else (
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc))
        return RejectedDocument({}, code="invalid_json",
                                reason=f"line {line} (byte {offset}) is not valid JSON: {why}", details=where)
    return loader_checks(value, maybe_surrogate=_SURROGATE_ESCAPE.search(text) is not None, where=where)


class JsonReader:
    """A JSON batch (an array, or an object with ``documents``) walked through a :class:`JsonWindow`."""

    def __init__(self, fh: IO[bytes], path: str, *, checks: bool = True,
                 start: tuple[int, int, int] | None = None) -> None:
        self.path, self.checks = path, checks
        self.first_index = 0
        self.batch_id: str | None = None
        self.keys: list[str] = []
        if start is not None:  # resume after entry ``index - 1``, whose JSON text ends at ``byte`` on ``line``
            fh.seek(start[1])
            self.first_index, self.kind = start[0], "resumed"
            self.w = JsonWindow(fh, path=path, hook=_object_pairs if checks else None, start_byte=start[1],
                                start_line=start[2])
            return
        # Without checks (the validating pass) the decoder builds plain dicts in C: repeated keys inside a
        # document reject only that document, so the pass need not see them (the object's own keys it reads itself).
        self.w = JsonWindow(fh, path=path, hook=_object_pairs if checks else None)
        w = self.w
        w.more()
        if w.buf.startswith("\ufeff"):
            w.pos = 1  # a UTF-8 byte order mark, as Windows editors write it
        first = w.peek()
        if first == "[":
            w.pos += 1
            self.kind = "list"
        elif first == "{":
            w.pos += 1
            self.kind = "object"
            if not self._members():
                self._missing_documents()
        else:
            value, _, _ = w.value()
            w.rest_is_blank()
            raise self._wrong_type(value)

    def _wrong_type(self, value: Any) -> BatchInputError:
        return BatchInputError(
            f"`documents` must be a list, got {type(value).__name__}", code="wrong_type",
            details={"path": self.path, "field": "documents", "got": type(value).__name__},
            hints=["Put the documents in a JSON array."])

    def _missing_documents(self) -> None:
        self.w.rest_is_blank()
        raise BatchInputError(
            "batch object has no `documents` field", code="missing_field",
            details={"path": self.path, "field": "documents", "fields": sorted(self.keys)},
            hints=['Write {"batch_id": "...", "documents": [{"id": ..., "content": ...}]}.'])

    def _members(self) -> bool:
        """Read the object's members up to ``documents`` (True, inside its array) or the closing brace (False)."""
        w = self.w
        while True:
            if w.peek() == "}":
                w.pos += 1
                return False
            if self.keys:
                w.expect(",", "',' delimiter")
            if w.peek() != '"':
                w.fail("Expecting property name enclosed in double quotes", w.pos)
            key, _, _ = w.value()
            w.expect(":", "':' delimiter")
            if key in self.keys:
                raise _duplicate_key_error([key], {"path": self.path})
            self.keys.append(key)
            if key == "documents":
                if w.peek() == "[":
                    w.pos += 1
                    return True
                raise self._wrong_type(w.value()[0])
            value, _, _ = w.value()
            if key == "batch_id":
                self.batch_id = check_header_batch_id(value, {"path": self.path})

    def entries(self) -> Iterator[StreamEntry]:
        """Every document of the array; without ``checks``, only the oversized ones as rejections (others None)."""
        w, index = self.w, self.first_index
        more = w.peek() != "]"
        if self.kind == "resumed" and more:
            w.expect(",", "',' delimiter")  # between two entries (what follows the array was checked at open)
        if not more:
            w.pos += 1
        else:
            while True:
                value, start, end = w.value()
                w.advance(start)
                offset, line = w.byte, w.line
                maybe = _SURROGATE_ESCAPE.search(w.buf, start, end) is not None
                w.advance(end)
                where = {"line": line, "byte_offset": offset}
                if self.checks:
                    raw = loader_checks(value, maybe_surrogate=maybe, where=where)
                else:
                    raw = loader_checks(value, maybe_surrogate=False, where=where) if oversize_bytes(value) else None
                yield StreamEntry(index, line, offset, w.byte - offset, raw, w.line)
                index += 1
                following = w.peek()
                if following == "]":
                    w.pos += 1
                    break
                if following != ",":
                    w.fail("Expecting ',' delimiter", w.pos)
                w.pos += 1
        if self.kind == "resumed":
            return
        if self.kind == "object":
            self._members()  # the keys after `documents` (a repeated one is refused) and the closing brace
        w.rest_is_blank()
