"""Batch input: load a batch file, validate it, and parse single documents.

Two levels of validation, as in the course's API:

* the **batch** (the file as a whole) must be readable UTF-8 JSON of the right
  shape, with no document over ``MAX_DOCUMENT_BYTES``. Otherwise
  :class:`BatchInputError` is raised *before any work starts*, so a bad file
  can never damage the state of an earlier run (the lesson's 400 case);
* a single **document** that is invalid (no id, empty content, a number where
  text belongs) does not stop the batch: :func:`parse_document` raises
  :class:`InvalidDocumentError` with a classifying ``code`` and the processor
  marks that document ``failed``.

The processor receives the raw document mappings, exactly as a real ingestion
endpoint would, and parses each one itself with :func:`parse_document`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BatchInputError, InvalidDocumentError

#: A larger document is refused with the whole batch (like an HTTP 413): it would
#: otherwise stall a worker and blow the memory of every retry.
MAX_DOCUMENT_BYTES = 1_000_000
#: A larger batch should be split into several batch ids (shards).
MAX_BATCH_DOCUMENTS = 200_000
DEFAULT_SOURCE = "default"
BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")



@dataclass(frozen=True)
class Document:
    """A valid document. ``metadata`` is carried along but never hashed (it is volatile)."""

    id: str
    content: str
    source: str = DEFAULT_SOURCE
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """A loaded batch: raw document mappings in input order, and where they came from."""

    documents: list[Mapping[str, Any]]
    batch_id: str | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.documents)


def normalize_id(doc_id: str) -> str:
    """Trim and case-fold an id: ``" DOC-7 "`` and ``"doc-7"`` name the same document."""
    return doc_id.strip().casefold()


def normalize_text(text: str) -> str:
    """NFC-normalize and collapse whitespace, so that formatting noise does not change identity."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())  # str.split() splits on every Unicode whitespace; faster than a regex


def content_hash(text: str) -> str:
    """SHA-256 of the normalized text (hex). Metadata and timestamps never enter it."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def identity(doc: Document) -> tuple[str, str, str]:
    """The harness's own notion of "the same document" (source, normalized id, content hash).

    The metrics group executions by this identity, whatever key format a student
    chose; a student key that splits one identity into two keys shows up as
    duplicate executions.
    """
    return (doc.source, normalize_id(doc.id), content_hash(doc.content))


def ident_of(doc: Document) -> str:
    """:func:`identity` as one short string, as the ledger and the sink record it."""
    return f"{doc.source}|{normalize_id(doc.id)}|{content_hash(doc.content)[:16]}"


def parse_document(raw: Any, *, default_source: str = DEFAULT_SOURCE) -> Document:
    """Validate one raw document mapping; raise :class:`InvalidDocumentError` if it is unusable.

    Codes: ``not_an_object``, ``missing_id``, ``missing_content``, ``wrong_type``,
    ``empty_content``.
    """
    if not isinstance(raw, Mapping):
        raise InvalidDocumentError(
            f"a document must be a JSON object, got {type(raw).__name__}",
            code="not_an_object",
            details={"got": type(raw).__name__},
            hints=["Each entry of `documents` is an object with `id` and `content`."],
        )
    doc_id = raw.get("id")
    if doc_id is None or (isinstance(doc_id, str) and not doc_id.strip()):
        raise InvalidDocumentError(
            "document has no id",
            code="missing_id",
            details={"fields": sorted(map(str, raw.keys()))},
            hints=["Give every document a non-empty string `id`."],
        )
    if not isinstance(doc_id, str):
        raise InvalidDocumentError(
            f"field `id` must be a string, got {type(doc_id).__name__}",
            code="wrong_type",
            details={"field": "id", "got": type(doc_id).__name__},
            hints=["Quote numeric ids: \"id\": \"42\"."],
        )
    if "content" not in raw or raw["content"] is None:
        raise InvalidDocumentError(
            f"document {doc_id!r} has no content",
            code="missing_content",
            details={"id": doc_id},
            hints=["Give every document a string `content`."],
        )
    content = raw["content"]
    if not isinstance(content, str):
        raise InvalidDocumentError(
            f"field `content` of {doc_id!r} must be a string, got {type(content).__name__}",
            code="wrong_type",
            details={"id": doc_id, "field": "content", "got": type(content).__name__},
            hints=["Send text; binary files are parsed upstream (Lesson 11)."],
        )
    if not content.strip():
        raise InvalidDocumentError(
            f"document {doc_id!r} is empty",
            code="empty_content",
            details={"id": doc_id},
            hints=["Drop empty documents at the source, or fix the extractor."],
        )
    source = raw.get("source", default_source)
    title = raw.get("title", "")
    metadata = raw.get("metadata", {})
    for name, value, kind in (("source", source, str), ("title", title, str), ("metadata", metadata, Mapping)):
        if not isinstance(value, kind):
            raise InvalidDocumentError(
                f"field `{name}` of {doc_id!r} has the wrong type {type(value).__name__}",
                code="wrong_type",
                details={"id": doc_id, "field": name, "got": type(value).__name__},
                hints=[f"`{name}` must be a {'object' if kind is Mapping else 'string'}."],
            )
    return Document(id=doc_id, content=content, source=source or default_source, title=title,
                    metadata=dict(metadata))


def try_parse(raw: Any) -> Document | InvalidDocumentError:
    """:func:`parse_document`, returning the error instead of raising it."""
    try:
        return parse_document(raw)
    except InvalidDocumentError as exc:
        return exc


def check_batch_id(batch_id: Any) -> str:
    """Return ``batch_id`` if it is a safe name (it becomes part of file names), else raise."""
    if not isinstance(batch_id, str) or not BATCH_ID_PATTERN.match(batch_id):
        raise BatchInputError(
            f"batch id {batch_id!r} is not a valid name",
            code="invalid_batch_id",
            details={"batch_id": batch_id, "pattern": BATCH_ID_PATTERN.pattern},
            hints=["Use letters, digits, '.', '_' and '-', at most 64 characters."],
        )
    return batch_id


def batch_from_data(data: Any, *, path: str | None = None) -> Batch:
    """Validate the shape of already-decoded batch data (a list, or an object with ``documents``)."""
    where = {"path": path} if path else {}
    batch_id = None
    if isinstance(data, Mapping):
        if "documents" not in data:
            raise BatchInputError(
                "batch object has no `documents` field",
                code="missing_field",
                details={**where, "field": "documents", "fields": sorted(map(str, data.keys()))},
                hints=['Write {"batch_id": "...", "documents": [{"id": ..., "content": ...}]}.'],
            )
        if data.get("batch_id") is not None:
            batch_id = check_batch_id(data["batch_id"])
        docs = data["documents"]
    else:
        docs = data
    if not isinstance(docs, list):
        raise BatchInputError(
            f"`documents` must be a list, got {type(docs).__name__}",
            code="wrong_type",
            details={**where, "field": "documents", "got": type(docs).__name__},
            hints=["Put the documents in a JSON array."],
        )
    if not docs:
        raise BatchInputError(
            "the batch has no documents",
            code="empty_batch",
            details=where,
            hints=["Generate an input with `batchlab make-input --docs 100`."],
        )
    if len(docs) > MAX_BATCH_DOCUMENTS:
        raise BatchInputError(
            f"the batch has {len(docs)} documents, more than {MAX_BATCH_DOCUMENTS}",
            code="batch_too_large",
            details={**where, "documents": len(docs), "limit": MAX_BATCH_DOCUMENTS},
            hints=["Split it into shards, each with its own batch id."],
        )
    oversized = []
    for index, raw in enumerate(docs):
        if isinstance(raw, Mapping) and isinstance(raw.get("content"), str):
            content = raw["content"]
            # Cheap bound first: a str of n code points encodes to at most 4n bytes.
            if len(content) * 4 > MAX_DOCUMENT_BYTES and len(content.encode("utf-8")) > MAX_DOCUMENT_BYTES:
                oversized.append({"index": index, "id": raw.get("id"), "bytes": len(content.encode("utf-8"))})
    if oversized:
        raise BatchInputError(
            f"{len(oversized)} document(s) exceed {MAX_DOCUMENT_BYTES} bytes",
            code="document_too_large",
            details={**where, "limit_bytes": MAX_DOCUMENT_BYTES, "documents": oversized[:10]},
            hints=["Split large documents before ingestion, or drop them from this batch."],
        )
    return Batch(documents=docs, batch_id=batch_id, path=path)


def load_batch(path: str | Path) -> Batch:
    """Read and validate a batch file; raise :class:`BatchInputError` with the unified structure."""
    p = Path(path)
    if not p.exists():
        raise BatchInputError(
            f"input file {str(p)!r} does not exist",
            code="input_not_found",
            details={"path": str(p)},
            hints=["Check the path, or use examples/input_example.json."],
        )
    if not p.is_file():
        raise BatchInputError(
            f"input path {str(p)!r} is not a file",
            code="input_not_a_file",
            details={"path": str(p)},
            hints=["Point at a .json file."],
        )
    blob = p.read_bytes()
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchInputError(
            f"input file is not valid UTF-8 (byte {exc.start})",
            code="invalid_utf8",
            details={"path": str(p), "byte_offset": exc.start},
            hints=["Re-encode the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)."],
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchInputError(
            f"input file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            code="invalid_json",
            details={"path": str(p), "line": exc.lineno, "column": exc.colno},
            hints=["Validate it with `python -m json.tool FILE`."],
        ) from None
    return batch_from_data(data, path=str(p))
