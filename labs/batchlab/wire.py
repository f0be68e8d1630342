"""The wire between a worker and its harness side (:mod:`batchlab.harness`, :mod:`batchlab.remote`).

One frame is a 4-byte big-endian length and a JSON object (ASCII-escaped, so any string a valid
document holds survives). Requests carry an ``id``; a reply names the request's ``id`` and holds
``ok`` (the value) or ``err`` (the exception, rebuilt on the worker's side by :func:`rebuild_error`).
What crosses: documents by their fields (:func:`doc_to_wire`), sink records by theirs, errors by
type name; never a pickle (the harness side must not run anything the worker sends).
"""

from __future__ import annotations

import json
import struct
from typing import Any

from .docmodel import Document
from .service import MalformedResponseError, PermanentServiceError, ServiceError, TransientServiceError
from .sink import SinkRecord

#: A frame larger than this is a protocol error (a batch's largest output is far below it).
MAX_FRAME = 32 * 2**20
_HEAD = struct.Struct(">I")
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame: length, then the JSON object."""
    body = _ENCODER.encode(message).encode("ascii")
    return _HEAD.pack(len(body)) + body


def split_frames(buffer: bytearray) -> list[dict[str, Any]]:
    """The complete frames at the start of ``buffer`` (removed from it); a partial frame stays."""
    frames: list[dict[str, Any]] = []
    while len(buffer) >= _HEAD.size:
        (size,) = _HEAD.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"a frame of {size} bytes (at most {MAX_FRAME})")
        if len(buffer) < _HEAD.size + size:
            break
        body = bytes(buffer[_HEAD.size:_HEAD.size + size])
        del buffer[:_HEAD.size + size]
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"a frame that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("a frame that is not a JSON object")
        frames.append(message)
    return frames


def doc_to_wire(doc: Any) -> dict[str, Any]:
    """A document's fields (whatever object the processor passed: only these attributes are read)."""
    return {"id": getattr(doc, "id", ""), "content": getattr(doc, "content", ""),
            "source": getattr(doc, "source", "default"), "title": getattr(doc, "title", ""),
            "metadata": dict(getattr(doc, "metadata", {}) or {})}


def doc_from_wire(data: Any) -> Document:
    """The document a frame describes; anything but strings where strings belong is refused."""
    if not isinstance(data, dict):
        raise ProtocolError("a document that is not an object")
    fields: dict[str, str] = {}
    for name in ("id", "content", "source", "title"):
        value = data.get(name)
        if not isinstance(value, str):
            raise ProtocolError(f"a document whose {name} is not a string")
        fields[name] = value
    metadata = data.get("metadata")
    return Document(id=fields["id"], content=fields["content"], source=fields["source"], title=fields["title"],
                    metadata=metadata if isinstance(metadata, dict) else {})


def embed_request(frame: dict[str, Any]) -> tuple[Document, int, str]:
    """The document, chunk number and text of an ``embed`` request, or :class:`ProtocolError`.

    One definition for both ends: the harness side serves (and counts, for a planned crash) exactly
    the requests this accepts, and the worker's proxy counts the calls it sends with it, so both
    agree on which call is the K-th (:mod:`batchlab.remote`). A content the service could not hash for
    its identity (a lone surrogate: not UTF-8) is refused here, before the service counts the call
    (checked by encoding, ~1000 times cheaper than computing the identity of a 100 KB document).
    """
    doc, chunk, text = doc_from_wire(frame.get("doc")), frame.get("chunk"), frame.get("text")
    if not isinstance(chunk, int) or not isinstance(text, str):
        raise ProtocolError("embed needs an integer chunk and a text")
    try:
        doc.content.encode("utf-8")
    except UnicodeError as exc:
        raise ProtocolError(f"a document whose content is not UTF-8: {exc}") from None
    return doc, chunk, text


def record_to_wire(rec: SinkRecord | None) -> dict[str, Any] | None:
    return None if rec is None else dict(rec.__dict__)


def record_from_wire(data: Any) -> SinkRecord | None:
    return None if data is None else SinkRecord(**data)


_ERRORS: dict[str, type[BaseException]] = {
    cls.__name__: cls for cls in (TransientServiceError, PermanentServiceError, ServiceError,
                                   MalformedResponseError, ValueError, TypeError, KeyError)}


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "kind": getattr(exc, "kind", None), "message": str(exc)}


def rebuild_error(data: Any) -> BaseException:
    """The exception a reply's ``err`` names: the service's own classes (a processor catches them by class),
    the builtins a sink raises, else a ``RuntimeError`` saying what the harness side raised."""
    data = data if isinstance(data, dict) else {}
    name, message = str(data.get("type", "")), str(data.get("message", ""))
    cls = _ERRORS.get(name)
    if cls is not None and issubclass(cls, ServiceError):
        return cls(str(data.get("kind") or name), message)
    if cls is not None:
        return cls(message)
    return RuntimeError(f"the harness side raised {name}: {message}")
