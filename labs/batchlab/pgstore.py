"""A batch in PostgreSQL (``--store postgresql://...``): the connection, the schema, the documents and the ledger.

When one machine is not enough, a batch lives in one PostgreSQL database that every worker reaches by
its URL: the batch's documents (streamed in, in chunks, so a joining worker needs only the URL and the
batch id), the ledger's events (one row each, so the metrics read every worker's events from anywhere),
the sink (:mod:`batchlab.pgsink`) and the shard leases (:mod:`batchlab.pgleases`). The ledger's writers are in
:mod:`batchlab.pgledger`. Every table is keyed by
``batch_id``: one database holds many batches.

Nothing here is needed by the lesson: SQLite in the run directory stays the default, and psycopg (the
``postgres`` extra) is imported only by these modules, never by ``import batchlab`` or the worker.

Reconnection: :class:`PgConnection` runs each transaction as a function; when the connection breaks
(the server restarted, a network blip) it reconnects with backoff, up to ``retry_s``, and runs the
transaction again from its start. A transaction that broke before its ``COMMIT`` reached the server is
simply redone. One whose ``COMMIT`` was sent but whose answer was lost is the classic ambiguous commit:
redoing it is harmless for the sink's outputs (an upsert) but records one more put, which the duplicate
rate then counts, honestly, as an execution it cannot tell from a redo.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    documents BIGINT NOT NULL DEFAULT 0,
    loaded BOOLEAN NOT NULL DEFAULT FALSE,
    spec JSON NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    batch_id TEXT NOT NULL, seq BIGINT NOT NULL, raw JSON NOT NULL,
    PRIMARY KEY (batch_id, seq)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq BIGSERIAL PRIMARY KEY, batch_id TEXT NOT NULL, event JSON NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_batch ON ledger (batch_id, seq);
CREATE TABLE IF NOT EXISTS outputs (
    batch_id TEXT NOT NULL, key TEXT NOT NULL, doc_id TEXT NOT NULL, ident TEXT NOT NULL, mode TEXT NOT NULL,
    chunks TEXT NOT NULL, vectors TEXT NOT NULL, committed_at DOUBLE PRECISION NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (batch_id, key)
);
CREATE INDEX IF NOT EXISTS outputs_ident ON outputs (batch_id, ident);
CREATE TABLE IF NOT EXISTS puts (
    seq BIGSERIAL PRIMARY KEY, batch_id TEXT NOT NULL, key TEXT NOT NULL, doc_id TEXT NOT NULL,
    ident TEXT NOT NULL, mode TEXT NOT NULL, pass INTEGER NOT NULL, t DOUBLE PRECISION NOT NULL,
    upgrade BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS puts_batch ON puts (batch_id, seq);
CREATE TABLE IF NOT EXISTS leases (
    batch_id TEXT NOT NULL, shard INTEGER NOT NULL, n_shards INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'free', owner TEXT, token BIGINT NOT NULL DEFAULT 0,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0, claims INTEGER NOT NULL DEFAULT 0,
    weight DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, shard)
);
CREATE TABLE IF NOT EXISTS lease_claims (
    seq BIGSERIAL PRIMARY KEY, batch_id TEXT NOT NULL, shard INTEGER NOT NULL, token BIGINT NOT NULL,
    owner TEXT NOT NULL, t DOUBLE PRECISION NOT NULL, took_over_from TEXT
);
CREATE TABLE IF NOT EXISTS fenced_puts (
    seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, batch_id TEXT NOT NULL, shard INTEGER NOT NULL,
    token BIGINT NOT NULL, owner TEXT NOT NULL, t DOUBLE PRECISION NOT NULL, claims_seen BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fence_refusals (
    seq BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, batch_id TEXT NOT NULL, shard INTEGER NOT NULL,
    token BIGINT NOT NULL, owner TEXT NOT NULL, t DOUBLE PRECISION NOT NULL
);
"""

#: Documents per INSERT when a batch is streamed in: a chunk is one round trip, memory stays one chunk.
CHUNK = 500


def is_store_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL store (``postgresql://`` or ``postgres://``) rather than a path."""
    return text.startswith(("postgresql://", "postgres://"))


class PgConnection:
    """One connection that survives a server restart: transactions run as functions, redone after a reconnect.

    ``sleep`` and ``clock`` are injected (the tests and the backoff); ``retry_s`` bounds how long a broken
    connection is retried before the error reaches the caller.
    """

    def __init__(self, url: str, *, retry_s: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.retry_s = retry_s
        self._sleep = sleep
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self.reconnects = 0
        self.transact(create_schema)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self.reconnects += 1
                self._conn.close()
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._conn

    def transact(self, work: Callable[[psycopg.Connection[Any]], T], *, pipeline: bool = False) -> T:
        """Run ``work(conn)`` in one transaction; on a broken connection reconnect and run it again.

        ``pipeline``: in psycopg's pipeline mode, where a statement is sent without waiting for the one before,
        and the client waits only where ``work`` fetches a result and at the commit (:func:`_pipelined`).
        """

        def in_transaction(conn: psycopg.Connection[Any]) -> T:
            if pipeline:
                return _pipelined(conn, work)
            with conn.transaction():
                return work(conn)

        return self._retried(in_transaction)

    def statement(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement committed on its own (autocommit: one round trip, no BEGIN/COMMIT); its row count.

        The ledger's rows and the leases' one-row updates take this path; retried as :meth:`transact`.
        """
        return self._retried(lambda conn: conn.execute(sql, params).rowcount)

    def rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read, run on its own (autocommit: one round trip, where :meth:`transact` takes three:
        BEGIN, the query, COMMIT); retried as :meth:`transact`. A sink's lookups take this path: once per document.
        """
        return self._retried(lambda conn: conn.execute(sql, params).fetchall())

    def _retried(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        deadline = self._clock() + self.retry_s
        delay = 0.05
        while True:
            try:
                return work(self._connection())
            except psycopg.OperationalError:
                if self._conn is not None and not (self._conn.broken or self._conn.closed):
                    raise  # the server answered with an error: not a connection to mend
                if self._clock() >= deadline:
                    raise
                self._sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _pipelined(conn: psycopg.Connection[Any], work: Callable[[psycopg.Connection[Any]], T]) -> T:
    """``work`` between a ``BEGIN`` and a ``COMMIT`` sent in one pipeline: a round trip per result ``work`` fetches,
    and one for the commit (the pipeline's closing sync, which carries every statement not yet sent).

    Not psycopg's ``conn.transaction()``: inside a pipeline it syncs after its ``BEGIN`` and again before its
    ``COMMIT`` (two round trips more; a put took five). A ``work`` that raises, or a statement that failed (its
    error comes at a fetch or at the sync; the statements after it are skipped), leaves the transaction open or
    aborted: it is rolled back (one more round trip, on that path only) and the error goes on. Results of
    statements not fetched in ``work`` are in their cursors after the sync (``work`` may return a cursor).
    """
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            result = work(conn)
            conn.execute("COMMIT")
    except BaseException:
        if not (conn.broken or conn.closed) and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise
    return result


#: Every table and index :data:`SCHEMA` creates, by name (what :func:`create_schema` looks for first).
SCHEMA_OBJECTS = tuple(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))

_SCHEMA_THERE = """
SELECT (SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relnamespace =
        (SELECT oid FROM pg_namespace WHERE nspname = current_schema()))
    = %s AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
                     AND table_name = 'leases' AND column_name = 'weight')
"""


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """Every table of a PostgreSQL store, created if missing (serialised by an advisory lock: many workers start).

    Every connection runs this, and a fleet opens one per claim (its renewal thread's): when every table, index and
    column is there already (one catalog query), nothing else is run. ``CREATE INDEX IF NOT EXISTS`` locks its
    table against writes even when the index exists, so running the DDL on every connection stalled every
    worker's puts for each claim; and ``ALTER TABLE`` takes the table's exclusive lock, which deadlocked against
    the puts in flight (one document ``failed`` with ``DeadlockDetected`` in a benchmark run).
    """
    row = conn.execute(_SCHEMA_THERE, (list(SCHEMA_OBJECTS), len(SCHEMA_OBJECTS))).fetchone()
    if row is not None and row[0]:
        return
    conn.execute("SELECT pg_advisory_xact_lock(1515)")
    conn.execute(SCHEMA)
    # a store made before shards had a weight: the column added once (never on every connection, see above)
    if conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                    "AND table_name = 'leases' AND column_name = 'weight'").fetchone() is None:
        conn.execute("ALTER TABLE leases ADD COLUMN weight DOUBLE PRECISION NOT NULL DEFAULT 0")


def load_documents(db: PgConnection, batch_id: str, documents: Iterable[Any], *,
                   spec: dict[str, Any] | None = None, chunk: int = CHUNK) -> int:
    """Stream a batch's raw entries into the store, ``chunk`` per transaction; how many there are.

    Idempotent: loading the same batch again rewrites the same rows (``seq`` is the entry's position), so a
    ``run --store`` that died while loading can be started again. ``batches.loaded`` turns true at the end:
    a worker that joins before that waits for it.
    """
    db.transact(lambda c: c.execute(
        "INSERT INTO batches (batch_id, spec, created_at) VALUES (%s, %s, %s) ON CONFLICT (batch_id) DO UPDATE "
        "SET spec = excluded.spec", (batch_id, json.dumps(spec or {}), time.time())))
    count = _insert_in_chunks(db, "INSERT INTO documents (batch_id, seq, raw) VALUES (%s, %s, %s) "
                              "ON CONFLICT (batch_id, seq) DO UPDATE SET raw = excluded.raw",
                              ((batch_id, seq, json.dumps(raw)) for seq, raw in enumerate(documents)),  # ASCII escapes
                              chunk)
    db.transact(lambda c: c.execute("UPDATE batches SET documents = %s, loaded = TRUE WHERE batch_id = %s",
                                    (count, batch_id)))
    return count


def batch_info(db: PgConnection, batch_id: str) -> dict[str, Any] | None:
    """A batch's row (documents, loaded, spec), None when the store has no such batch."""
    row = db.transact(lambda c: c.execute(
        "SELECT documents, loaded, spec FROM batches WHERE batch_id = %s", (batch_id,)).fetchone())
    return None if row is None else {"documents": int(row[0]), "loaded": bool(row[1]), "spec": row[2]}


def iter_documents(db: PgConnection, batch_id: str, *, chunk: int = CHUNK) -> Iterator[Any]:
    """A batch's raw entries in input order, read ``chunk`` at a time (keyset pages: memory stays one page)."""
    yield from _pages(db, "SELECT seq, raw FROM documents WHERE batch_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                      batch_id, chunk)


def iter_document_texts(db: PgConnection, batch_id: str, *, chunk: int = CHUNK) -> Iterator[str]:
    """A batch's raw entries in input order as the JSON text the store holds (one line each: loaded with ASCII
    escapes, no newline), unparsed: a joining worker copies them to its local file as they are."""
    yield from _pages(db, "SELECT seq, raw::text FROM documents WHERE batch_id = %s AND seq > %s ORDER BY seq "
                      "LIMIT %s", batch_id, chunk)


def iter_events(db: PgConnection, batch_id: str, *, chunk: int = 5000) -> Iterator[dict[str, Any]]:
    """A batch's ledger events in the order they were written, every worker's together."""
    for event in _pages(db, "SELECT seq, event FROM ledger WHERE batch_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                        batch_id, chunk):
        if isinstance(event, dict) and "ev" in event:
            yield event


def _pages(db: PgConnection, sql: str, batch_id: str, chunk: int) -> Iterator[Any]:
    after = -1
    while True:
        rows = db.transact(lambda c, a=after: c.execute(sql, (batch_id, a, chunk)).fetchall())  # type: ignore[misc]
        for seq, value in rows:
            after = int(seq)
            yield value
        if len(rows) < chunk:
            return


def import_events(db: PgConnection, batch_id: str, events: Iterable[Mapping[str, Any]], *, chunk: int = CHUNK) -> int:
    """Append events already written elsewhere (a worker's file ledger) to the batch's ledger, in order; how many."""
    return _insert_in_chunks(db, "INSERT INTO ledger (batch_id, event) VALUES (%s, %s)",
                             ((batch_id, json.dumps(dict(event), default=str)) for event in events), chunk)


def _insert_in_chunks(db: PgConnection, sql: str, rows: Iterable[tuple[Any, ...]], chunk: int) -> int:
    """``sql`` for every row, ``chunk`` rows per transaction (a redo after a reconnect repeats that chunk alone);
    how many rows: memory holds one chunk whatever the stream's length."""
    count = 0
    source = iter(rows)
    while page := list(itertools.islice(source, chunk)):
        def flush(c: psycopg.Connection[Any], page: list[tuple[Any, ...]] = page) -> None:
            with c.cursor() as cur:
                cur.executemany(sql, page)

        db.transact(flush)
        count += len(page)
    return count
