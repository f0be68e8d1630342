"""Reading a batch file: bytes, JSON, the batch's shape, and the checks a loader makes per document.

The **batch** (the file as a whole) must be readable UTF-8 JSON of the right shape, with no
document over ``MAX_DOCUMENT_BYTES``. Otherwise :class:`BatchInputError` is raised *before any
work starts*, so a bad file can never damage the state of an earlier run (the lesson's 400 case).
What the loader decides about inputs that are legal in one sense and not in another is listed in
:mod:`batchlab.documents`, which re-exports this module's public names. A JSON Lines file
(``.jsonl``) is read by :mod:`batchlab.batchstream`, which builds on this module's checks.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The per-document rules live in :mod:`batchlab.doccheck`; their names stay importable from here.
from .doccheck import _SURROGATE_ESCAPE as _SURROGATE_ESCAPE
from .doccheck import MAX_DOCUMENT_BYTES as MAX_DOCUMENT_BYTES
from .doccheck import _checked as _checked
from .doccheck import _DuplicateKeys as _DuplicateKeys
from .doccheck import _escaped as _escaped
from .doccheck import _object_pairs as _object_pairs
from .doccheck import _surrogate_field as _surrogate_field
from .doccheck import oversize_bytes as oversize_bytes
from .docmodel import Document, has_lone_surrogate
from .errors import BatchInputError
from .inventory import Inventory

#: The most documents :func:`load_batch` holds in memory at once (a :class:`Batch` is a list); a larger
#: batch is read as a stream (:func:`batchlab.batchstream.open_batch`, no limit on N) or split into shards.
MAX_BATCH_DOCUMENTS = 200_000
DEFAULT_SOURCE = "default"
#: File names read as JSON Lines (one document per line); every other name is read as JSON.
JSONL_SUFFIXES = (".jsonl", ".ndjson")
BATCH_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class Batch:
    """A loaded batch: raw document mappings in input order, and where they came from."""

    documents: list[Mapping[str, Any]]
    batch_id: str | None = None
    path: str | None = None

    def __len__(self) -> int:
        return len(self.documents)

    def inventory(self) -> Inventory:
        """Every entry parsed once and folded by identity (:class:`batchlab.inventory.Inventory`)."""
        return Inventory.of(self.documents)

    def valid_documents(self) -> list[Document]:
        """Every entry parsed, the invalid ones left out, in input order (duplicates kept)."""
        return self.inventory().valid_documents()

    def unique_documents(self) -> list[Document]:
        """The valid documents folded by identity, first occurrence kept: what a run must commit once each."""
        return self.inventory().unique_documents()


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


def batch_from_data(data: Any, *, path: str | None = None, check_unicode: bool = True) -> Batch:
    """Validate the shape of already-decoded batch data (a list, or an object with ``documents``).

    ``check_unicode=False`` skips the per-document scan for lone surrogates and
    repeated keys (the loader passes it when the file's text cannot hold either).
    """
    where = {"path": path} if path else {}
    batch_id = None
    if isinstance(data, _DuplicateKeys):
        raise BatchInputError(
            f"the batch object repeats the key(s) {', '.join(map(repr, data.duplicates))}",
            code="duplicate_key",
            details={**where, "duplicates": data.duplicates},
            hints=["JSON parsers keep only the last of repeated keys, silently; write each key once."],
        )
    if isinstance(data, Mapping):
        if isinstance(data.get("batch_id"), str) and has_lone_surrogate(data["batch_id"]):
            raise BatchInputError(
                "the batch id holds a lone surrogate (an escape such as \\ud800 that is not valid Unicode)",
                code="invalid_unicode",
                details={**where, "field": "batch_id", "batch_id": data["batch_id"]},
                hints=["Use letters, digits, '.', '_' and '-' in the batch id."],
            )
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
    if check_unicode:
        docs = [_checked(raw) for raw in docs]
    oversized = []
    for index, raw in enumerate(docs):
        size = oversize_bytes(raw)
        if size is not None:
            oversized.append({"index": index, "id": raw.get("id"), "bytes": size})
    if oversized:
        raise too_large_error(oversized, where)
    return Batch(documents=docs, batch_id=batch_id, path=path)


def too_large_error(oversized: list[dict[str, Any]], where: Mapping[str, Any]) -> BatchInputError:
    """The whole batch refused for its oversized documents (the first ten named, with their position)."""
    return BatchInputError(
        f"{len(oversized)} document(s) exceed {MAX_DOCUMENT_BYTES} bytes",
        code="document_too_large",
        details={**where, "limit_bytes": MAX_DOCUMENT_BYTES, "documents": oversized[:10]},
        hints=["Split large documents before ingestion, or drop them from this batch."],
    )


def _input_error(p: Path, code: str, message: str, hint: str, **details: Any) -> BatchInputError:
    return BatchInputError(message, code=code, details={"path": str(p), **details}, hints=[hint])


def read_input_bytes(path: str | Path) -> bytes:
    """The bytes of an input file, or :class:`BatchInputError` saying exactly why not."""
    p = check_input_path(path)
    try:
        return p.read_bytes()
    except OSError as exc:
        raise unreadable_error(p, exc) from None


def unreadable_error(p: Path, exc: OSError) -> BatchInputError:
    """``input_unreadable`` for a file that exists but whose open or read failed."""
    return _input_error(p, "input_unreadable", f"input file {str(p)!r} cannot be read: {exc.strerror}",
                        "Check its permissions (`ls -l`; `chmod u+r FILE`).",
                        errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)))


def check_input_path(path: str | Path) -> Path:
    """``path`` if it names a regular file, or :class:`BatchInputError` saying exactly why not."""
    p = Path(path)
    try:
        st = os.stat(p)
    except ValueError:  # an embedded NUL byte
        raise _input_error(p, "input_not_found", "the input path is not a valid path", "Check the path.") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _input_error(p, "input_symlink_loop",
                               f"input path {str(p)!r} is a symlink loop (a link that leads back to itself)",
                               "Point --input at the real file: `ls -l` shows where each link goes.") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(p):
                raise _input_error(p, "input_not_found",
                                   f"input path {str(p)!r} is a symlink to {os.readlink(p)!r}, which does not exist",
                                   "Fix or remove the dangling link.", target=os.readlink(p)) from None
            raise _input_error(p, "input_not_found", f"input file {str(p)!r} does not exist",
                               "Check the path, or use examples/input_example.json.") from None
        raise _input_error(p, "input_unreadable", f"input file {str(p)!r} cannot be reached: {exc.strerror}",
                           "Check the permissions of the file and of its folders.",
                           errno=errno.errorcode.get(exc.errno or 0, str(exc.errno))) from None
    if not stat.S_ISREG(st.st_mode):
        raise _input_error(p, "input_not_a_file", f"input path {str(p)!r} is not a file",
                           "Point at a .json or .jsonl file.")
    return p


#: A lone surrogate can only come from a ``\\uD800``-``\\uDFFF`` escape (raw surrogate bytes are not UTF-8).
def parse_batch_text(text: str, *, path: str | None = None) -> Batch:
    """Decode and validate the text of a batch file (a leading BOM is accepted)."""
    p = Path(path or "<input>")
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte order mark, as Windows editors write it
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        raise _input_error(p, "invalid_json",
                           f"input file is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                           "Validate it with `python -m json.tool FILE`.", line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise _input_error(p, "invalid_json", "input file is nested too deeply to parse",
                           "A batch is an object with a list of flat documents; check how the file was "
                           "generated.") from None
    except ValueError as exc:  # integers beyond Python's digit limit
        raise _input_error(p, "invalid_json", f"input file holds a value that cannot be read: {exc}",
                           "Numbers of more than 4300 digits are refused; quote them as strings.") from None
    return batch_from_data(data, path=path, check_unicode=bool(_SURROGATE_ESCAPE.search(text)) or
                           _has_duplicates(data))


def _has_duplicates(data: Any) -> bool:
    docs = data.get("documents") if isinstance(data, Mapping) else data
    return isinstance(docs, list) and any(isinstance(d, _DuplicateKeys) for d in docs)


def load_batch(path: str | Path) -> Batch:
    """Read and validate a batch file; raise :class:`BatchInputError` with the unified structure.

    A JSON Lines file (``.jsonl``, ``.ndjson``) is read through :func:`batchlab.batchstream.load_streamed`
    (imported here, at call time: the stream builds on this module); any other name is read as JSON, whole.
    """
    p = Path(path)
    if p.suffix.lower() in JSONL_SUFFIXES:
        from .batchstream import load_streamed

        return load_streamed(p)
    blob = read_input_bytes(p)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchInputError(
            f"input file is not valid UTF-8 (byte {exc.start})",
            code="invalid_utf8",
            details={"path": str(p), "byte_offset": exc.start},
            hints=["Re-encode the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)."],
        ) from None
    return parse_batch_text(text, path=str(p))
