"""Batch input: load a batch file, validate it, and parse single documents.

Two levels of validation, as in the course's API:

* the **batch** (the file as a whole) must be readable UTF-8 JSON (or JSON Lines,
  ``.jsonl``: one document per line) of the right shape, with no document over ``MAX_DOCUMENT_BYTES``. Otherwise
  :class:`BatchInputError` is raised *before any work starts*, so a bad file
  can never damage the state of an earlier run (the lesson's 400 case);
* a single **document** that is invalid (no id, empty content, a number where
  text belongs) does not stop the batch: :func:`parse_document` raises
  :class:`InvalidDocumentError` with a classifying ``code`` and the processor
  marks that document ``failed``.

What the loader decides about inputs that are legal in one sense and not in another:

* a UTF-8 **byte order mark** (Windows editors write one) is accepted and dropped;
* **duplicate keys**: JSON allows them and Python keeps the last one, silently. A
  duplicate ``batch_id`` or ``documents`` refuses the batch (``duplicate_key``); a
  document with a duplicate key is rejected alone (which ``id`` or ``content`` was meant?);
* **lone surrogates** (``"\\ud800"``: valid JSON grammar, not valid Unicode; they
  cannot be hashed, stored or printed as UTF-8): in the batch id they refuse the
  batch (``invalid_unicode``); inside a document they reject that document alone
  (:class:`RejectedDocument`, with every string escaped so that a processor can
  record its id), and the rest of the batch goes on;
* nesting too deep for the parser and integers beyond Python's 4300-digit limit are
  ``invalid_json``; a file that exists but cannot be read is ``input_unreadable``;
  a symlink loop is named as one (``input_symlink_loop``), not "does not exist".

The processor receives the raw document mappings, exactly as a real ingestion
endpoint would, and parses each one itself with :func:`parse_document`.

A large batch is read as a **stream** (:func:`open_batch`, :func:`iter_batch`): the same rules, one
document in memory at a time, each with its index, line and byte offset (:mod:`batchlab.batchstream`).

This module is the import surface (``from batchlab.documents import ...`` in the solution, the
skeleton, the notebooks and the grader); the code lives in three modules by role:
:mod:`batchlab.docmodel` (one document: type, validation, identity), :mod:`batchlab.batchfile`
(reading a batch file: bytes, JSON, shape, the loader's per-document checks),
:mod:`batchlab.batchstream` (the same file read one document at a time, JSON or JSON Lines) and
:mod:`batchlab.inventory` (a batch's entries parsed once and folded by identity).
"""

from __future__ import annotations

from .batchfile import (
    BATCH_ID_PATTERN,
    MAX_BATCH_DOCUMENTS,
    MAX_DOCUMENT_BYTES,
    Batch,
    batch_from_data,
    check_batch_id,
    load_batch,
    parse_batch_text,
    read_input_bytes,
)
from .batchstream import BatchHeader, BatchStream, StreamEntry, iter_batch, open_batch
from .docmodel import (
    DEFAULT_SOURCE,
    Document,
    RejectedDocument,
    content_hash,
    has_lone_surrogate,
    ident_of,
    identity,
    normalize_id,
    normalize_text,
    parse_document,
    try_parse,
)
from .inventory import Entry, Inventory

__all__ = [
    "BATCH_ID_PATTERN", "DEFAULT_SOURCE", "MAX_BATCH_DOCUMENTS", "MAX_DOCUMENT_BYTES", "Batch", "BatchHeader",
    "BatchStream", "Document", "Entry", "Inventory", "RejectedDocument", "StreamEntry", "batch_from_data",
    "check_batch_id", "content_hash", "has_lone_surrogate", "ident_of", "identity", "iter_batch", "load_batch",
    "normalize_id", "normalize_text", "open_batch", "parse_batch_text", "parse_document", "read_input_bytes",
    "try_parse",
]
