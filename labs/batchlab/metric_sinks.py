"""The two ways a run's sink reaches the metric fold: given as lists, or the run's sink file attached read-only.

Both copy the sink's puts into the fold's scratch database (:class:`batchlab.fold_store.FoldStore`)
and answer one identity's committed outputs at a time (:mod:`batchlab.metric_fold` compares each with
the oracle); split from the fold so that each module stays one idea.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .docmodel import Document
from .fold_store import FoldStore
from .ledger_views import is_upgrade
from .pipeline import MODE_DEGRADED, MODE_FULL, expected_json, output_matches
from .sink import SinkRecord

#: A valid document as the fold judges it: its identity, the document, its cleaned text.
Judged = tuple[str, Document, str]

Event = Mapping[str, Any]


class SinkDamage(Exception):
    """A committed output that cannot be decoded (its chunks or vectors are not JSON)."""


class ListSink:
    """A sink given as lists (the grader, the tests): outputs grouped by identity, puts copied into the store."""

    def __init__(self, outputs: Sequence[SinkRecord], puts: Sequence[Event]) -> None:
        self._by_ident: dict[str, list[SinkRecord]] = defaultdict(list)
        for rec in outputs:
            self._by_ident[rec.ident].append(rec)
        self._puts = puts

    def load_puts(self, store: FoldStore) -> None:
        store.db.executemany("INSERT INTO puts VALUES (?, ?, ?, ?)",
                             ((i, p["ident"], int(p["pass"]), int(is_upgrade(p))) for i, p in enumerate(self._puts)))

    def records(self, ident: str) -> list[SinkRecord]:
        return self._by_ident.get(ident, [])

    def verdicts_of(self, block: Sequence[Judged]) -> list[list[tuple[str, str, bool]]]:
        """``(doc_id, mode, equals the oracle's)`` of each committed output of each ``(ident, doc, cleaned text)``."""
        return [[(rec.doc_id, rec.mode, output_matches(doc, rec.mode, rec.chunks, rec.vectors))
                 for rec in self.records(ident)] for ident, doc, _ in block]


class FileSink:
    """The sink file of a run, attached read-only to the fold's store: puts copied, outputs looked up per identity."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._db: sqlite3.Connection | None = None

    def attach(self, store: FoldStore) -> None:
        """Attach the sink file, read-only, to ``store``'s database as ``sink`` (once; nothing is copied)."""
        if self._path is None or self._db is not None:
            return
        db = self._db = store.db
        db.execute("COMMIT")  # ATTACH is refused inside a transaction
        db.execute("ATTACH DATABASE ? AS sink", (f"{self._path.resolve().as_uri()}?mode=ro",))
        db.execute("BEGIN")

    def load_puts(self, store: FoldStore, *, outputs: bool = True) -> None:
        """Copy the puts into ``store``; with ``outputs`` also index the outputs by identity (for :meth:`records`)."""
        self.attach(store)
        if self._db is None:
            return
        self._db.execute("INSERT INTO puts SELECT seq, ident, pass, upgrade != 0 FROM sink.puts ORDER BY seq")
        if outputs:
            self.index_outputs()

    def index_outputs(self) -> None:
        """Index the sink's outputs by identity in the store (:meth:`records`, :meth:`verdicts_of` look them up)."""
        db = self._db
        if db is None:
            return
        db.execute("CREATE TABLE out_ix (ident TEXT NOT NULL, rid INTEGER NOT NULL)")
        db.execute("INSERT INTO out_ix SELECT ident, rowid FROM sink.outputs")
        db.execute("CREATE INDEX out_ix_ident ON out_ix (ident, rid)")

    def records(self, ident: str) -> list[SinkRecord]:
        if self._db is None:
            return []
        rows = self._db.execute(
            "SELECT o.key, o.doc_id, o.ident, o.mode, o.chunks, o.vectors, o.committed_at, o.writes FROM out_ix x "
            "JOIN sink.outputs o ON o.rowid = x.rid WHERE x.ident = ? ORDER BY x.rid", (ident,)).fetchall()
        return [_record(row) for row in rows]

    def verdicts_of(self, block: Sequence[Judged]) -> list[list[tuple[str, str, bool]]]:
        """As :meth:`ListSink.verdicts_of`, from the stored JSON texts, one query for the block's identities.

        Compared as texts first (:func:`batchlab.pipeline.expected_json`: equal texts are equal outputs);
        a text that differs is decoded (a damaged one raises :class:`SinkDamage`, as :meth:`records`
        does) and compared as :meth:`ListSink.verdicts_of` compares it. Each identity's outputs in the
        sink's order, as :meth:`records` gives them.
        """
        if self._db is None or not block:
            return [[] for _ in block]
        marks = ",".join("?" * len(block))
        rows: dict[str, list[Any]] = defaultdict(list)
        for row in self._db.execute(
                "SELECT x.ident, o.key, o.doc_id, o.mode, o.chunks, o.vectors FROM out_ix x "
                f"JOIN sink.outputs o ON o.rowid = x.rid WHERE x.ident IN ({marks}) ORDER BY x.ident, x.rid",
                [ident for ident, _, _ in block]):
            rows[row[0]].append(row)
        out: list[list[tuple[str, str, bool]]] = []
        for ident, doc, text in block:
            found = rows.get(ident)
            if found is None:
                out.append([])
                continue
            if len(found) == 1:  # the common case, inlined: one output, equal to the oracle's as texts
                _, _, doc_id, mode, chunks, vectors = found[0]
                if mode == MODE_FULL or mode == MODE_DEGRADED:
                    want = expected_json(text, mode)
                    if chunks == want[0] and vectors == want[1]:
                        out.append([(doc_id, mode, True)])
                        continue
            expected: dict[str, tuple[str, str]] = {}  # the oracle's texts by mode, made once for the identity
            out.append([_verdict(row, doc, text, expected) for row in found])
        return out


class SinkPuts:
    """:meth:`batchlab.fold_store.FoldStore.committed_before` from the sink's own puts, copied only if asked often.

    The ledger's child (:mod:`batchlab.metric_child`) asks it only for each pass's first call on an
    identity not committed before the pass (its resume time): in a run that does not redo committed
    work, one question a pass, about the pass's first call. Copying and indexing every put for that was
    1.4 s of the child's CPU at a million documents. So a pass that no put precedes (the sink's smallest
    pass, one scan of its table) is answered without a lookup; other questions scan the sink's table
    (no index there: 0.15 s at a million) up to :attr:`SCANS` times; past them the puts are copied into
    the store and indexed, once, as the caller does, and asked there. The same SQL comparisons every way.
    """

    #: Questions answered by a scan of the sink's table before the puts are copied and indexed.
    SCANS = 3

    def __init__(self, sink: FileSink, store: FoldStore) -> None:
        self._sink, self._store = sink, store
        self._first: Any = None  # the smallest pass of a put (math.inf: no put), once scanned
        self._scans = 0
        self._copied = False

    def __call__(self, ident: str, pass_no: int) -> bool:
        """True when ``ident`` has a put of a pass before ``pass_no``."""
        self._sink.attach(self._store)
        db = self._sink._db
        if db is None:
            return False
        if self._first is None:
            first, some = db.execute("SELECT MIN(pass), EXISTS (SELECT 1 FROM sink.puts) FROM sink.puts").fetchone()
            self._first = math.inf if not some else first if type(first) in (int, float) else -math.inf
        if pass_no <= self._first:
            return False
        if not self._copied and self._scans < self.SCANS:
            self._scans += 1
            return db.execute("SELECT 1 FROM sink.puts WHERE ident = ? AND pass < ? LIMIT 1",
                              (ident, pass_no)).fetchone() is not None
        if not self._copied:
            self._sink.load_puts(self._store, outputs=False)
            self._store.index_puts()
            self._copied = True
        return self._store.committed_before(ident, pass_no)


def _verdict(row: Sequence[Any], doc: Document, text: str, expected: dict[str, tuple[str, str]]) -> tuple[str, str, bool]:
    """One stored output (``ident, key, doc_id, mode, chunks, vectors``) against the oracle's for ``doc``."""
    _, key, doc_id, mode, chunks, vectors = row
    if mode == MODE_FULL or mode == MODE_DEGRADED:
        want = expected.get(mode)
        if want is None:
            want = expected[mode] = expected_json(text, mode)
        if chunks == want[0] and vectors == want[1]:
            return doc_id, mode, True
    return doc_id, mode, output_matches(doc, mode, *_decoded(key, chunks, vectors))


def _decoded(key: Any, chunks: Any, vectors: Any) -> tuple[Any, Any]:
    try:
        return json.loads(chunks), json.loads(vectors)
    except (ValueError, TypeError) as exc:
        raise SinkDamage(f"output {key!r}: {type(exc).__name__}: {exc}") from None


def _record(row: Sequence[Any]) -> SinkRecord:
    key, doc_id, ident, mode, chunks, vectors, committed_at, writes = row
    return SinkRecord(key, doc_id, ident, mode, *_decoded(key, chunks, vectors), committed_at, writes)
