"""A batch read as a stream: one document in memory at a time, from JSON Lines or a JSON array.

:func:`batchlab.batchfile.load_batch` reads a whole file and returns a list; at the sizes the lecture
speaks of (大规模文档, a million documents) that list is the memory of the run. :func:`open_batch`
reads the same files one document at a time, and gives each with its position (index, line,
byte offset). Two formats:

* **JSON** (``.json``, or any name but the two below): today's file, an array of documents or an
  object ``{"batch_id": ..., "documents": [...]}``, walked through a bounded window
  (:mod:`batchlab.jsonwindow`) with the standard library's decoder, so it means exactly what
  ``load_batch`` reads from it. A JSON file is one JSON text: a syntax error anywhere refuses it whole.
* **JSON Lines** (``.jsonl``, ``.ndjson``): one document per line, UTF-8 (a byte order mark is
  accepted). The first non-blank line may be the **header** ``{"header": true, "batch_id": "..."}``
  (those two keys only; ``batch_id`` optional), recognised by ``"header": true``; any other first
  line is a document. Blank lines are skipped (they keep their line number). Each line is its own
  JSON text, so a line that is not valid JSON rejects that document alone
  (:class:`RejectedDocument` ``invalid_json``, naming the line and the byte offset), and the rest goes on.

Every other rule is the loader's and holds in both formats (tests run the same cases through
``.json``, ``.jsonl`` and the streamed array): a document with a lone surrogate or a repeated key is
rejected alone, a non-object entry is a document that fails ``not_an_object``, a document over
``MAX_DOCUMENT_BYTES`` refuses the batch. Whole-batch errors (unreadable, not UTF-8, wrong shape,
empty, a bad or repeated batch id, an oversized document, a JSON syntax error) come from
:func:`open_batch`, before the first document is handed out: it reads the file once to validate it
(in constant memory) unless ``validate=False``. Such a stream has no limit on the number of
documents; ``MAX_BATCH_DOCUMENTS`` bounds only what ``load_batch`` holds in a list.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

from .batchfile import (
    JSONL_SUFFIXES,
    MAX_BATCH_DOCUMENTS,
    Batch,
    check_input_path,
    too_large_error,
    unreadable_error,
)
from .docmodel import RejectedDocument
from .errors import BatchInputError
from .streamreaders import JsonLinesReader, JsonReader, StreamEntry

Format = Literal["json", "jsonl"]
#: The encoding check decodes (and drops) this much at a time: small, so it adds nothing to the peak memory.
UTF8_CHECK_BYTES = 1 << 16
#: :meth:`BatchStream.fingerprint` hashes this many bytes at the start and before the offset.
FINGERPRINT_BYTES = 1 << 16


def batch_format(path: str | Path) -> Format:
    """``jsonl`` for a ``.jsonl`` or ``.ndjson`` file name, ``json`` for any other."""
    return "jsonl" if Path(path).suffix.lower() in JSONL_SUFFIXES else "json"


@dataclass(frozen=True)
class BatchHeader:
    """What a stream knows about its batch before the first document."""

    path: str
    format: Format
    batch_id: str | None
    #: Entries in the batch, counted by the validating pass (None when ``validate=False``).
    documents: int | None
    #: The file's size and modification time when it was opened: a later reader can tell it changed.
    size: int
    mtime_ns: int


class BatchStream:
    """A batch file read one entry at a time; iterate it again to read it again (the file is reopened).

    What a processor receives as ``documents`` from ``batchlab run`` (the worker): iterating it
    reads one document at a time. It also answers ``len()`` (the validating pass counted the
    entries) and, for a processor written for a list, ``documents[i]``, which loads the whole
    batch into a list once (what the stream avoids; a valid design all the same). For a processor
    that keeps a global offset (全局 offset): :meth:`entries` from a position and :meth:`fingerprint`.
    """

    def __init__(self, header: BatchHeader) -> None:
        self.header = header
        self._loaded: list[Any] | None = None

    def entries(self, start: tuple[int, int, int] | None = None) -> Iterator[StreamEntry]:
        """Every entry in input order, with its position; whole-batch damage met on the way raises.

        ``start`` is ``(index, byte, line)``: the entry to read first and where the one before it ended
        (``entry.offset + entry.length`` and ``entry.end_line``), so a resume skips the prefix unread.
        """
        with _open_file(Path(self.header.path)) as fh:
            reader = (JsonLinesReader if self.header.format == "jsonl" else JsonReader)(
                fh, self.header.path, start=start if start and start[0] > 0 else None)
            yield from reader.entries()

    def fingerprint(self, byte: int) -> str:
        """What identifies the file's first ``byte`` bytes without reading them all (a hex digest).

        The file's size and modification time (any write changes them: a file that changed at all is
        taken as changed, an append included), the first 64 KB and the 64 KB before ``byte`` (an edit
        that keeps both, as a copy that keeps the time can, changes the bytes around the offset or at the
        start, where a new version of a generated batch differs). Reads at most 128 KB.
        """
        path = Path(self.header.path)
        digest = hashlib.sha256()
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                digest.update(f"{st.st_size}:{st.st_mtime_ns}:{byte}:".encode())
                digest.update(fh.read(min(byte, FINGERPRINT_BYTES)))
                fh.seek(max(0, byte - FINGERPRINT_BYTES))
                digest.update(fh.read(min(byte, FINGERPRINT_BYTES)))
        except OSError as exc:
            raise unreadable_error(path, exc) from None
        return digest.hexdigest()

    def __iter__(self) -> Iterator[Any]:
        """The raw documents (or :class:`RejectedDocument`), as ``Batch.documents`` holds them."""
        return (entry.raw for entry in self.entries())

    def __len__(self) -> int:
        """The number of entries, as the validating pass counted them."""
        if self.header.documents is None:
            raise TypeError("a stream opened with validate=False does not know its length")
        return self.header.documents

    def __getitem__(self, index: Any) -> Any:
        """``documents[i]`` (or a slice): the batch loaded into a list once, for a processor written for a list."""
        if self._loaded is None:
            self._loaded = list(self)
        return self._loaded[index]


def open_batch(path: str | Path, *, validate: bool = True, format: Format | None = None,
               documents: int | None = None) -> BatchStream:
    """Open a batch file as a stream; with ``validate`` (the default), refuse a bad file before any work.

    The validating pass reads the whole file once in constant memory (one document at a time) and
    raises the :class:`BatchInputError` ``load_batch`` would raise for it, with the line or index and
    the byte offset; it also counts the entries. ``validate=False`` skips it: a caller that has
    validated the same file (same size and modification time, :class:`BatchHeader`) opens it again
    without reading it twice, and the header then knows only a ``batch_id`` written before the documents
    (and the count that caller passes as ``documents``).
    """
    p = check_input_path(path)
    st = os.stat(p)
    fmt = format or batch_format(p)
    with _open_file(p) as fh:
        if validate:
            _check_utf8(fh, str(p))  # first, as load_batch: a file that is not UTF-8 is that, whatever else
            fh.seek(0)
        reader = (JsonLinesReader if fmt == "jsonl" else JsonReader)(fh, str(p), checks=not validate)
        count = None
        if validate:
            count = _validate(reader, str(p))
        header = BatchHeader(path=str(p), format=fmt, batch_id=reader.batch_id, documents=count or documents,
                             size=st.st_size, mtime_ns=st.st_mtime_ns)
    return BatchStream(header)


def _open_file(p: Path) -> IO[bytes]:
    try:
        return open(p, "rb", buffering=1 << 20)  # the caller closes it
    except OSError as exc:
        raise unreadable_error(p, exc) from None


def _check_utf8(fh: IO[bytes], path: str) -> None:
    """Refuse a file that is not UTF-8 with the byte offset (and line) of the first bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = newlines = 0
    while True:
        blob = fh.read(UTF8_CHECK_BYTES)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(blob, final=not blob)
        except UnicodeDecodeError as exc:
            offset = done - pending + exc.start
            line = 1 + newlines + blob.count(b"\n", 0, max(exc.start - pending, 0))
            raise BatchInputError(
                f"input file is not valid UTF-8 (byte {offset}, line {line})", code="invalid_utf8",
                details={"path": path, "byte_offset": offset, "line": line},
                hints=["Re-encode the file as UTF-8 (e.g. `iconv -f GBK -t UTF-8`)."]) from None
        if not blob:
            return
        done += len(blob)
        newlines += blob.count(b"\n")


def _validate(reader: JsonReader | JsonLinesReader, path: str) -> int:
    """Read every entry once (each dropped at once): the count, or the whole-batch error.

    The reader was made with ``checks=False``: only what refuses a batch is looked at (the syntax, the shape,
    the size of each document), not what rejects one document (lone surrogates, repeated keys, a bad line).
    """
    count = 0
    oversized: list[dict[str, Any]] = []
    for entry in reader.entries():
        count += 1
        raw = entry.raw
        if isinstance(raw, RejectedDocument) and raw.code == "document_too_large":
            oversized.append({"index": entry.index, **raw.details})
    if oversized:
        raise too_large_error(oversized, {"path": path})
    if not count:
        raise BatchInputError("the batch has no documents", code="empty_batch", details={"path": path},
                              hints=["Generate an input with `batchlab make-input --docs 100`."])
    return count


def open_checked(path: str | Path, memo: Path | None) -> BatchStream:
    """:func:`open_batch`, validating the file only if ``memo`` does not say this very file was validated.

    ``memo`` (a small JSON file, None for none) keeps the path, size, modification time, count and batch
    id of the last file validated: a resumed run of a large batch starts without reading it all once
    more. A file that changed in any way (size or time) is validated again. The memo is written
    atomically; an unreadable one is ignored.
    """
    p = check_input_path(path)
    st = os.stat(p)
    ident = {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if memo is not None:
        try:
            known = json.loads(memo.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = None
        if isinstance(known, dict) and {k: known.get(k) for k in ident} == ident and known.get("documents"):
            stream = open_batch(p, validate=False, documents=int(known["documents"]))
            if stream.header.batch_id is None and isinstance(known.get("batch_id"), str):  # written after the documents
                stream = BatchStream(replace(stream.header, batch_id=known["batch_id"]))
            return stream
    stream = open_batch(p)
    if memo is not None:
        tmp = memo.with_name(memo.name + ".tmp")
        tmp.write_text(json.dumps({**ident, "documents": stream.header.documents,
                                   "batch_id": stream.header.batch_id}), encoding="utf-8")
        os.replace(tmp, memo)
    return stream


def iter_batch(path: str | Path) -> tuple[BatchHeader, Iterator[Any]]:
    """The batch's header and an iterator of its raw documents, validated first (:func:`open_batch`)."""
    stream = open_batch(path)
    return stream.header, iter(stream)


def load_streamed(path: str | Path) -> Batch:
    """A whole :class:`Batch` from a stream (``load_batch`` on a JSON Lines file): validated, then listed."""
    stream = open_batch(path)
    n = stream.header.documents or 0
    if n > MAX_BATCH_DOCUMENTS:
        raise BatchInputError(
            f"the batch has {n} documents, more than {MAX_BATCH_DOCUMENTS} (the most load_batch holds in memory)",
            code="batch_too_large",
            details={"path": stream.header.path, "documents": n, "limit": MAX_BATCH_DOCUMENTS},
            hints=["Read it as a stream (batchlab.batchstream.open_batch), or split it into shards, each with "
                   "its own batch id."])
    return Batch(documents=list(stream), batch_id=stream.header.batch_id, path=stream.header.path)


__all__ = ["BatchHeader", "BatchStream", "Format", "StreamEntry", "batch_format", "iter_batch", "load_streamed",
           "open_batch", "open_checked"]
