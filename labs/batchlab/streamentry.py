"""One entry of a streamed batch and the rules both stream readers share (the header's batch id, a repeated key).

Split from :mod:`batchlab.streamreaders` (the JSON reader) and :mod:`batchlab.jsonlines` (the JSON Lines
reader) so that neither imports the other; :mod:`batchlab.streamreaders` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .batchfile import check_batch_id
from .doccheck import MAX_DOCUMENT_BYTES, _checked, _DuplicateKeys, oversize_bytes
from .docmodel import RejectedDocument, has_lone_surrogate
from .errors import BatchInputError


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


def stream_entry(index: int, line: int, offset: int, length: int, raw: Any, end_line: int) -> StreamEntry:
    """``StreamEntry(...)`` without the frozen dataclass's field-by-field ``object.__setattr__`` (a third of the cost).

    The same instance (its fields are its ``__dict__``); the JSON Lines reader makes one a line.
    """
    entry: StreamEntry = object.__new__(StreamEntry)
    entry.__dict__.update(index=index, line=line, offset=offset, length=length, raw=raw, end_line=end_line)
    return entry


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
