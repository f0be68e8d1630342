"""The output store: a SQLite table of committed document outputs, keyed by idempotency key.

``put`` is an upsert (writing the same key twice leaves one row: the idempotent
write of the lesson) and is durable against a process kill when it returns: the
row is committed in SQLite's write-ahead log before ``put`` returns. The same
transaction appends to a ``puts`` table, so the record of *how many times* each
key was written can never disagree with the outputs themselves; the metrics
count executions from it.

An *upgrade* (后续标记待补, backfill) is a ``full`` put over a committed ``degraded``
output of the same key: the sink replaces the output, marks the put ``upgrade`` in
``puts`` and in the ledger, and does not count it in ``writes``. ``writes`` counts
the executions that redid work (a first write, then every redo), so an upgrade is
never a duplicate execution, and a later full put over the upgraded output still is.

Durability: ``durable="process"`` (default, WAL + synchronous=NORMAL) survives a
SIGKILL of the worker, the failure this lesson injects. ``durable="power"``
(synchronous=FULL) also survives a power cut, at the price of an fsync per put.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import Document, ident_of
from .faults import CRASH_AFTER_COMMIT, CrashPlan, kill_self
from .ledger import Ev, Ledger
from .pipeline import MODE_DEGRADED, MODE_FULL

SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    key TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL,
    ident TEXT NOT NULL,
    mode TEXT NOT NULL,
    chunks TEXT NOT NULL,
    vectors TEXT NOT NULL,
    committed_at REAL NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1
);
-- seq without AUTOINCREMENT: no row of puts is ever deleted, so the rowid (max + 1) grows all the same,
-- and a put does not write SQLite's sqlite_sequence page too (a sink of an older kit keeps its AUTOINCREMENT)
CREATE TABLE IF NOT EXISTS puts (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    ident TEXT NOT NULL,
    mode TEXT NOT NULL,
    pass INTEGER NOT NULL,
    t REAL NOT NULL,
    upgrade INTEGER NOT NULL DEFAULT 0
);
"""


#: ``json.dumps(..., ensure_ascii=False)`` builds an encoder per call; one encoder, the same text.
_CHUNKS_JSON = json.JSONEncoder(ensure_ascii=False)


@dataclass(frozen=True)
class SinkRecord:
    """One committed output."""

    key: str
    doc_id: str
    ident: str
    mode: str
    chunks: list[str]
    vectors: list[list[float]]
    committed_at: float
    writes: int


def connect(path: str | Path, *, durable: str = "process") -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable == 'power' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA)
    if "upgrade" not in {row[1] for row in conn.execute("PRAGMA table_info(puts)")}:  # a sink of an older kit
        conn.execute("ALTER TABLE puts ADD COLUMN upgrade INTEGER NOT NULL DEFAULT 0")
    return conn


def check_put(key: str, chunks: Sequence[str], vectors: Sequence[Sequence[float]]) -> None:
    """A put's arguments as every sink checks them (this one, :class:`batchlab.pgsink.PgSink`)."""
    if not isinstance(key, str) or not key:
        raise ValueError("sink key must be a non-empty string")
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")


class PutBookkeeping:
    """What every sink does once a put committed (this one, :class:`batchlab.pgsink.PgSink`): count it, log its
    ``sink_put`` (unless ``logged``: the put's transaction wrote it, as a PostgreSQL sink does with a ledger in the
    same store), and crash there if the plan says so; ``writes`` is returned."""

    ledger: Any
    crash: CrashPlan
    commits: int
    _on_crash: Callable[[], None]

    def _committed(self, doc: Document, ident: str, key: str, mode: str, writes: int, upgrade: bool, *,
                   logged: bool = False) -> int:
        self.commits += 1
        if self.ledger is not None and not logged:
            self.ledger.emit(Ev.SINK_PUT, doc_id=doc.id, ident=ident, key=key, mode=mode, n=self.commits,
                             writes=writes, upgrade=upgrade)
        if self.crash.kind == CRASH_AFTER_COMMIT and self.commits == self.crash.at:
            if self.ledger is not None:
                self.ledger.emit(Ev.CRASH, kind=CRASH_AFTER_COMMIT, at=self.commits, doc_id=doc.id, ident=ident)
            self._on_crash()
        return writes


class SqliteSink(PutBookkeeping):
    """The sink handed to ``process_documents_batch``.

    Use: ``sink.put(key, doc, chunks, vectors, mode="full")`` once a document is
    fully processed; ``sink.get(key)`` / ``key in sink`` to ask whether a key is
    already committed (trust the sink over your checkpoint on resume).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ledger: Ledger | None = None,
        pass_no: int = 1,
        crash: CrashPlan | None = None,
        durable: str = "process",
        on_crash: Callable[[], None] = kill_self,
        clock: Callable[[], float] = time.time,
        guard: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.ledger = ledger
        self.pass_no = pass_no
        self.crash = crash or CrashPlan()
        self._on_crash = on_crash
        self._clock = clock
        #: Run inside each put's write transaction before the upsert (a shard lease's fence,
        #: :meth:`batchlab.leases.SqliteLeaseStore.fence`): raising refuses the put, which is rolled back.
        self._guard = guard
        self._conn = connect(self.path, durable=durable)
        self.commits = 0

    def put(self, key: str, doc: Document, chunks: Sequence[str], vectors: Sequence[Sequence[float]],
            *, mode: str = "full") -> int:
        """Upsert the output of ``doc`` under ``key``; committed when this returns.

        Returns how many times ``key`` has now been executed: 1 for a first write,
        more when this put redid work that was already committed (a duplicate). A
        ``full`` put over a committed ``degraded`` output is an upgrade (a backfill):
        it replaces the output and is not counted, so it returns what the key had.
        """
        check_put(key, chunks, vectors)
        ident = ident_of(doc)
        now = self._clock()
        chunks_json = _CHUNKS_JSON.encode(list(chunks))
        vectors_json = json.dumps([list(v) for v in vectors])
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._guard is not None:
                self._guard(conn, key)
            before = conn.execute("SELECT mode FROM outputs WHERE key = ?", (key,)).fetchone()
            upgrade = before is not None and before[0] == MODE_DEGRADED and mode == MODE_FULL
            (writes,) = conn.execute(
                "INSERT INTO outputs (key, doc_id, ident, mode, chunks, vectors, committed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET doc_id=excluded.doc_id, "
                "ident=excluded.ident, mode=excluded.mode, chunks=excluded.chunks, vectors=excluded.vectors, "
                "committed_at=excluded.committed_at, writes=outputs.writes + ? RETURNING writes",
                (key, doc.id, ident, mode, chunks_json, vectors_json, now, 0 if upgrade else 1),
            ).fetchone()
            conn.execute("INSERT INTO puts (key, doc_id, ident, mode, pass, t, upgrade) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (key, doc.id, ident, mode, self.pass_no, now, int(upgrade)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return self._committed(doc, ident, key, mode, int(writes), upgrade)

    def get(self, key: str) -> SinkRecord | None:
        row = self._conn.execute(
            "SELECT key, doc_id, ident, mode, chunks, vectors, committed_at, writes FROM outputs WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else _record(row)

    def __contains__(self, key: object) -> bool:
        return self._conn.execute("SELECT 1 FROM outputs WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        """All committed keys (one query: use it to resume without a lookup per document)."""
        return {k for (k,) in self._conn.execute("SELECT key FROM outputs")}

    def close(self) -> None:
        self._conn.close()


def _record(row: tuple[Any, ...]) -> SinkRecord:
    key, doc_id, ident, mode, chunks, vectors, committed_at, writes = row
    return SinkRecord(key, doc_id, ident, mode, json.loads(chunks), json.loads(vectors), committed_at, writes)


def read_outputs(path: str | Path) -> list[SinkRecord]:
    """All committed outputs of a sink file (read-only use by metrics and reports)."""
    if not Path(path).exists():
        return []
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT key, doc_id, ident, mode, chunks, vectors, committed_at, writes FROM outputs").fetchall()
    finally:
        conn.close()
    return [_record(r) for r in rows]


def read_puts(path: str | Path) -> list[dict[str, Any]]:
    """Every put ever committed, in order (``upgrade`` True for a backfill's upgrade): what the duplicate rate counts."""
    if not Path(path).exists():
        return []
    conn = connect(path)
    try:
        rows = conn.execute("SELECT seq, key, doc_id, ident, mode, pass, t, upgrade FROM puts ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [{**dict(zip(("seq", "key", "doc_id", "ident", "mode", "pass", "t"), r[:7], strict=True)),
             "upgrade": bool(r[7])} for r in rows]
