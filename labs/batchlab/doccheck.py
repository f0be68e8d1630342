"""The loader's rules for one document: what rejects it alone (a lone surrogate, a repeated key) or refuses the batch (size).

Every reader applies them (:func:`batchlab.batchfile.load_batch` on a whole file, the stream's readers in
:mod:`batchlab.streamreaders` and :mod:`batchlab.jsonlines` one document at a time), so a document means
the same in every format. Split from :mod:`batchlab.batchfile` (the batch as a file), which re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .docmodel import RejectedDocument, has_lone_surrogate

#: A larger document is refused with the whole batch (like an HTTP 413): it would
#: otherwise stall a worker and blow the memory of every retry.
MAX_DOCUMENT_BYTES = 1_000_000


class _DuplicateKeys(dict):  # type: ignore[type-arg]
    """A decoded JSON object that repeated a key (``duplicates`` names them); JSON keeps the last value."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object hook: a dict, marked when a key repeats (cheap: one length check)."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _DuplicateKeys(obj)
    seen: set[str] = set()
    marked.duplicates = sorted({k for k, _ in pairs if k in seen or seen.add(k)})  # type: ignore[func-returns-value]
    return marked



def _escape(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if has_lone_surrogate(text) else text


def _escaped(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) written as ``\\udXXX`` text."""
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, Mapping):
        return {_escape(k) if isinstance(k, str) else k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _surrogate_field(raw: Mapping[Any, Any]) -> str | None:
    """The name of the first field of ``raw`` (keys included, any depth) holding a lone surrogate."""
    for key in raw:
        if isinstance(key, str) and has_lone_surrogate(key):
            return "(a key)"
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in raw.items()]
    while stack:  # iterative: metadata may be nested as deep as the parser allowed
        name, value = stack.pop()
        if isinstance(value, str):
            if has_lone_surrogate(value):
                return name
        elif isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(k, str) and has_lone_surrogate(k):
                    return name
                stack.append((name, v))
        elif isinstance(value, list):
            stack.extend((name, v) for v in value)
    return None



def _checked(raw: Any) -> Any:
    """``raw``, or a :class:`RejectedDocument` for it when a loader-level check rejects it."""
    if not isinstance(raw, Mapping):
        return raw
    field_name = _surrogate_field(raw)
    if field_name is not None:
        return RejectedDocument(
            _escaped(raw), code="invalid_unicode",
            reason=f"field `{field_name}` holds a lone surrogate (an escape such as \\ud800 that is not "
                   "valid Unicode)")
    if isinstance(raw, _DuplicateKeys):
        return RejectedDocument(
            raw, code="duplicate_key",
            reason=f"the document repeats the key(s) {', '.join(map(repr, raw.duplicates))}")
    return raw


def oversize_bytes(raw: Any) -> int | None:
    """The UTF-8 size of ``raw``'s content when it is over :data:`MAX_DOCUMENT_BYTES`, else None."""
    # ``type(raw) is dict`` first: the ABC's isinstance check is most of this function's cost on a plain document
    if (type(raw) is dict or isinstance(raw, Mapping)) and isinstance(raw.get("content"), str):
        content = raw["content"]
        # Cheap bound first: a str of n code points encodes to at most 4n bytes.
        if len(content) * 4 > MAX_DOCUMENT_BYTES:
            size = len(content.encode("utf-8", "surrogatepass"))
            return size if size > MAX_DOCUMENT_BYTES else None
    return None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
