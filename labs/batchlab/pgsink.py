"""The output store in PostgreSQL: :class:`batchlab.sink.SqliteSink`'s semantics, one batch of a shared database.

``put`` is an upsert (``INSERT ... ON CONFLICT (batch_id, key) DO UPDATE``) committed when it returns,
and the same transaction appends to ``puts``, so the record of every execution cannot disagree with the
outputs. An upgrade (a ``full`` put over a committed ``degraded`` output) is marked in ``puts`` and not
counted in ``writes``, exactly as in SQLite (:mod:`batchlab.sink` says why); the tests put the same writes
through both sinks and compare what they hold.

Two writers of one key: SQLite serialises them with ``BEGIN IMMEDIATE``; here a transaction-scoped
advisory lock on (batch, key) does, so reading the previous mode (is this an upgrade?) and the upsert
see the same row. A ``guard`` (a shard lease's fence, :meth:`batchlab.pgleases.PgLeaseStore.fence`) runs
first in the same transaction: raising refuses the put and rolls it back.

The ledger goes into the put's transaction when it is the store's (:class:`batchlab.pgledger.PgLedger` on the
same connection and batch): the events it holds (a fleet pass's service calls) and the put's ``sink_put`` event,
whose ``writes`` and ``upgrade`` the upsert's statement fills in, so a committed put always has its event and
the event never names a put that did not commit. The transaction runs in pipeline mode
(:meth:`batchlab.pgstore.PgConnection.transact`) and nothing is fetched before the commit: a lease's fence
(:class:`batchlab.pgleases.Fence`) checks on the server and fails the transaction when the lease is stale (its
``refusal`` turns that error into :class:`batchlab.leases.StaleLease`), so a fenced put is one round trip (the
check, the lock, the events, the upsert with its ``puts`` row and ``sink_put`` event, the commit), where it
took five and its event a sixth (psycopg's ``conn.transaction()`` syncs twice in a pipeline, and the check was
fetched). A guard that fetches costs a round trip more.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg

from .documents import Document, ident_of
from .faults import CrashPlan, kill_self
from .ledger import Ev
from .pgledger import PgLedger, insert_rows
from .pgstore import PgConnection
from .pipeline import MODE_DEGRADED, MODE_FULL
from .sink import PutBookkeeping, SinkRecord, check_put

Guard = Callable[[psycopg.Connection[Any], str], None]
OUTPUT_COLUMNS = "key, doc_id, ident, mode, chunks, vectors, committed_at, writes"

#: The upsert, its ``puts`` row and its ``sink_put`` event (``event``: the event's JSON up to its ``writes``, which
#: the upsert gives; None when the ledger is not the store's) in one statement: ``before`` reads the output as it was when the statement
#: started (a data-modifying CTE's rows are not visible to the others), so an upgrade (a full put over a
#: degraded output) is told from the same row the upsert replaces, under the key's advisory lock.
_UPSERT = """
WITH before AS (
    SELECT mode FROM outputs WHERE batch_id = %(batch)s AND key = %(key)s
), up AS (
    INSERT INTO outputs (batch_id, key, doc_id, ident, mode, chunks, vectors, committed_at)
    VALUES (%(batch)s, %(key)s, %(doc)s, %(ident)s, %(mode)s, %(chunks)s, %(vectors)s, %(now)s)
    ON CONFLICT (batch_id, key) DO UPDATE SET doc_id = excluded.doc_id, ident = excluded.ident, mode = excluded.mode,
        chunks = excluded.chunks, vectors = excluded.vectors, committed_at = excluded.committed_at,
        writes = outputs.writes + CASE WHEN outputs.mode = %(degraded)s AND excluded.mode = %(full)s THEN 0 ELSE 1 END
    RETURNING writes
), log AS (
    INSERT INTO puts (batch_id, key, doc_id, ident, mode, pass, t, upgrade)
    SELECT %(batch)s, %(key)s, %(doc)s, %(ident)s, %(mode)s, %(pass)s, %(now)s,
        COALESCE((SELECT mode FROM before) = %(degraded)s AND %(is_full)s, FALSE)
    RETURNING upgrade
), event AS (
    INSERT INTO ledger (batch_id, event)
    SELECT %(batch)s, (%(event)s::text || (SELECT writes FROM up) || ', "upgrade": '
        || CASE WHEN (SELECT upgrade FROM log) THEN 'true' ELSE 'false' END || '}')::json
    WHERE %(event)s::text IS NOT NULL
)
SELECT (SELECT writes FROM up), (SELECT upgrade FROM log)
"""


#: The committed keys of shard ``i`` of ``n`` (the lesson's shard of a key: the first 8 bytes of its sha256, big
#: endian, modulo ``n``; as two 32-bit halves, so that bigint holds every step), at most ``cap`` + 1 of them.
_SHARD_KEYS = """
SELECT key FROM (SELECT key, sha256(convert_to(key, 'UTF8')) AS h FROM outputs WHERE batch_id = %(batch)s) AS o
WHERE ((('x' || encode(substr(h, 1, 4), 'hex'))::bit(32)::bigint %% %(n)s) * (4294967296 %% %(n)s)
       + ('x' || encode(substr(h, 5, 4), 'hex'))::bit(32)::bigint) %% %(n)s = %(i)s
LIMIT %(cap)s + 1
"""
#: The most keys a shard's :class:`ShardKeys` holds (about 100 bytes each); past it every lookup asks the server.
SHARD_KEYS_CAP = 50_000


def shard_of(key: str, n: int) -> int:
    """The shard of ``key`` among ``n``, as the lesson's ``in_shard`` computes it (and :data:`_SHARD_KEYS` in SQL)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n


class ShardKeys:
    """``key in sink`` for the keys of the shard a fenced pass holds, answered without a round trip.

    The processor asks the sink once per document whether its key is committed (a kill between the put and the
    checkpoint's ``done``): one round trip each, during which its event loop stands still. While a lease holds,
    the keys of its shard are committed only under it: a put of an earlier holder committed before the claim (the
    claim takes the lease row ``FOR UPDATE``, the put's fence holds it ``FOR SHARE``) and a later one is refused by
    the fence. So the shard's committed keys read once after the claim, plus this pass's own puts, are the
    answer for any key of the shard, for as long as the lease holds; once it is lost, a put is refused anyway.
    Keys of other shards are asked of the server, and so is every key once the shard holds more than ``cap``
    (the memory stays bounded). A processor that splits keys otherwise than the lesson's hash only loses the
    shortcut's answers for keys another pass committed: they are run again and counted as duplicates, never lost.
    """

    def __init__(self, db: PgConnection, batch_id: str, shard: int, n_shards: int, *, cap: int = SHARD_KEYS_CAP) -> None:
        self.db, self.batch_id, self.shard, self.n_shards, self.cap = db, batch_id, shard, n_shards, cap
        self._keys: set[str] | None = None
        self._read = False

    def known(self, key: object) -> bool | None:
        """Whether ``key`` is committed, or None when this shard's keys cannot tell (another shard's, too many)."""
        if not isinstance(key, str) or shard_of(key, self.n_shards) != self.shard:
            return None
        if not self._read:
            rows = self.db.rows(_SHARD_KEYS, {"batch": self.batch_id, "n": self.n_shards, "i": self.shard,
                                              "cap": self.cap})
            self._keys = {str(k) for (k,) in rows} if len(rows) <= self.cap else None
            self._read = True
        return None if self._keys is None else key in self._keys

    def put(self, key: str) -> None:
        """``key`` was committed by this pass."""
        if self._keys is not None and shard_of(key, self.n_shards) == self.shard:
            self._keys.add(key)
            if len(self._keys) > self.cap:
                self._keys = None


class EventSink(Protocol):
    """What the sink writes its events to: a file :class:`batchlab.ledger.Ledger` or a :class:`batchlab.pgledger.PgLedger`."""

    def emit(self, ev: str, **fields: Any) -> None: ...


class PgSink(PutBookkeeping):
    """The sink handed to ``process_documents_batch`` when the batch lives in PostgreSQL (same use as SqliteSink)."""

    def __init__(self, db: PgConnection, batch_id: str, *, ledger: EventSink | None = None, pass_no: int = 1,
                 crash: CrashPlan | None = None, on_crash: Callable[[], None] = kill_self,
                 clock: Callable[[], float] = time.time, guard: Guard | None = None,
                 shard: tuple[int, int] | None = None) -> None:
        self.db, self.batch_id = db, batch_id
        #: ``(i, n)``: the shard whose lease fences every put (``guard``): its keys are looked up in :class:`ShardKeys`.
        self._shard_keys = None if shard is None else ShardKeys(db, batch_id, *shard)
        self.ledger = ledger
        self.pass_no = pass_no
        self.crash = crash or CrashPlan()
        self._on_crash = on_crash
        self._clock = clock
        self._guard = guard
        self.commits = 0

    def put(self, key: str, doc: Document, chunks: Sequence[str], vectors: Sequence[Sequence[float]],
            *, mode: str = "full") -> int:
        """Upsert the output of ``doc`` under ``key``; committed when this returns. Returns as SqliteSink.put."""
        check_put(key, chunks, vectors)
        ident = ident_of(doc)
        now = self._clock()
        chunks_json = json.dumps(list(chunks))  # ASCII escapes: a lone surrogate is text PostgreSQL cannot hold
        vectors_json = json.dumps([list(v) for v in vectors])

        ledger = self.ledger if isinstance(self.ledger, PgLedger) and self.ledger.db is self.db \
            and self.ledger.batch_id == self.batch_id else None
        held = ledger.held() if ledger is not None else []
        event = None if ledger is None else ledger.text(
            Ev.SINK_PUT, doc_id=doc.id, ident=ident, key=key, mode=mode, n=self.commits + 1)[:-1] + ', "writes": '
        args = {"batch": self.batch_id, "key": key, "doc": doc.id, "ident": ident, "mode": mode, "chunks": chunks_json,
                "vectors": vectors_json, "now": now, "pass": self.pass_no, "full": MODE_FULL, "degraded": MODE_DEGRADED,
                "is_full": mode == MODE_FULL, "event": event}

        def write(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
            if self._guard is not None:
                self._guard(conn, key)  # a fence's check is not fetched: a refusal fails the transaction
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.batch_id}/{key}",))
            if held:
                conn.execute(*insert_rows(self.batch_id, held))
            return conn.execute(_UPSERT, args)  # fetched after the commit: no round trip of its own

        try:
            cursor = self.db.transact(write, pipeline=True)
        except psycopg.Error as exc:  # a guard that checks on the server (a lease's fence) says what a refusal is
            refusal = getattr(self._guard, "refusal", None)
            if refusal is not None and (refused := refusal(exc, key)) is not None:
                raise refused from exc
            raise
        row = cursor.fetchone()
        assert row is not None
        if ledger is not None:
            ledger.written()
        if self._shard_keys is not None:
            self._shard_keys.put(key)
        return self._committed(doc, ident, key, mode, int(row[0]), bool(row[1]), logged=ledger is not None)

    def get(self, key: str) -> SinkRecord | None:
        rows = self.db.rows(f"SELECT {OUTPUT_COLUMNS} FROM outputs WHERE batch_id = %s AND key = %s",
                            (self.batch_id, key))
        return record(rows[0]) if rows else None

    def __contains__(self, key: object) -> bool:
        if self._shard_keys is not None and (known := self._shard_keys.known(key)) is not None:
            return known
        return bool(self.db.rows("SELECT 1 FROM outputs WHERE batch_id = %s AND key = %s", (self.batch_id, key)))

    def keys(self) -> set[str]:
        """All committed keys of the batch (one query: a resume without a lookup per document)."""
        return {str(k) for (k,) in self.db.rows("SELECT key FROM outputs WHERE batch_id = %s", (self.batch_id,))}

    def close(self) -> None:
        """Nothing to close: the connection is the caller's (several sinks and stores share one)."""


def record(row: Sequence[Any]) -> SinkRecord:
    """A row of ``outputs`` (in ``OUTPUT_COLUMNS`` order) as the SQLite sink's :class:`SinkRecord`."""
    key, doc_id, ident, mode, chunks, vectors, committed_at, writes = row
    return SinkRecord(key, doc_id, ident, mode, json.loads(chunks), json.loads(vectors), float(committed_at),
                      int(writes))


def read_outputs(db: PgConnection, batch_id: str) -> list[SinkRecord]:
    """All committed outputs of a batch (as :func:`batchlab.sink.read_outputs`, in key order)."""
    rows = db.transact(lambda c: c.execute(
        f"SELECT {OUTPUT_COLUMNS} FROM outputs WHERE batch_id = %s ORDER BY key", (batch_id,)).fetchall())
    return [record(r) for r in rows]


def read_puts(db: PgConnection, batch_id: str) -> list[dict[str, Any]]:
    """Every put of a batch, in commit order (as :func:`batchlab.sink.read_puts`)."""
    rows = db.transact(lambda c: c.execute(
        "SELECT seq, key, doc_id, ident, mode, pass, t, upgrade FROM puts WHERE batch_id = %s ORDER BY seq",
        (batch_id,)).fetchall())
    return [{"seq": int(r[0]), "key": r[1], "doc_id": r[2], "ident": r[3], "mode": r[4], "pass": int(r[5]),
             "t": float(r[6]), "upgrade": bool(r[7])} for r in rows]
