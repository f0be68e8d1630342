"""The two readers behind :mod:`batchlab.batchstream`: a JSON file through a window (here), a JSON Lines file by line.

The JSON Lines reader lives in :mod:`batchlab.jsonlines` and what both share in :mod:`batchlab.streamentry`;
their names are importable from here too.

Each reader is made on an open binary file, reads the batch's head at once (the JSON object's keys
before ``documents``, or the JSON Lines header line), so ``batch_id`` is known before the first
document, and then yields :class:`StreamEntry` values, one decoded document at a time. Both apply
:func:`loader_checks`, the loader's per-document rules, so a document means the same in every format.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from .doccheck import _SURROGATE_ESCAPE, _object_pairs, oversize_bytes
from .errors import BatchInputError
from .jsonlines import HEADER_KEYS as HEADER_KEYS
from .jsonlines import MAX_LINE_BYTES as MAX_LINE_BYTES
from .jsonlines import JsonLinesReader as JsonLinesReader
from .jsonlines import jsonl_line_document as jsonl_line_document
from .jsonwindow import JsonWindow
from .streamentry import StreamEntry as StreamEntry
from .streamentry import _duplicate_key_error, check_header_batch_id, loader_checks


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
