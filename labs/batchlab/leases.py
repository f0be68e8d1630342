"""Shard leases in SQLite: the lease store of a run directory (its ``sink.sqlite``), one writer at a time.

The protocol every lease store keeps (the states, the token incremented on every claim, renew/finish/release
under owner and token, the fence in the sink's transaction, the claim history) is :mod:`batchlab.lease_model`'s,
whose names are importable from here too; :mod:`batchlab.pgleases` is the same protocol on PostgreSQL. SQLite
serialises claims with ``BEGIN IMMEDIATE``, and the fence (:meth:`SqliteLeaseStore.fence`) runs after the sink's
``BEGIN IMMEDIATE``, so a claim and a stale write are serialised by the same write lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from .lease_model import (
    DONE,
    EXIT_STALE,
    EXPIRED_WHERE,
    FREE,
    HELD,
    LEASE_WHERE,
    FencedSink,
    GuardedUpdates,
    Lease,
    LeaseError,
    LeaseStore,
    ShardState,
    StaleLease,
    lease_row,
    shard_rows,
)

__all__ = ["DONE", "EXIT_STALE", "FREE", "HELD", "SCHEMA", "FencedSink", "GuardedUpdates", "Lease", "LeaseError",
           "LeaseStore", "ShardState", "SqliteLeaseStore", "StaleLease", "connect", "shard_rows"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    batch_id TEXT NOT NULL,
    shard INTEGER NOT NULL,
    n_shards INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'free',
    owner TEXT,
    token INTEGER NOT NULL DEFAULT 0,
    expires_at REAL NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    weight REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, shard)
);
CREATE TABLE IF NOT EXISTS lease_claims (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id TEXT NOT NULL, shard INTEGER NOT NULL, token INTEGER NOT NULL, owner TEXT NOT NULL,
    t REAL NOT NULL, took_over_from TEXT
);
CREATE TABLE IF NOT EXISTS fenced_puts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, batch_id TEXT NOT NULL, shard INTEGER NOT NULL, token INTEGER NOT NULL,
    owner TEXT NOT NULL, t REAL NOT NULL, claims_seen INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS fence_refusals (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, batch_id TEXT NOT NULL, shard INTEGER NOT NULL, token INTEGER NOT NULL,
    owner TEXT NOT NULL, t REAL NOT NULL
);
"""


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, waiting on a busy writer."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(SCHEMA)
    _add_weight(conn)
    return conn


def _add_weight(conn: sqlite3.Connection) -> None:
    """A lease table made before shards had a weight gets the column (0: unknown, the claim order of then)."""
    if any(row[1] == "weight" for row in conn.execute("PRAGMA table_info(leases)")):
        return
    try:
        conn.execute("ALTER TABLE leases ADD COLUMN weight REAL NOT NULL DEFAULT 0")
    except sqlite3.OperationalError as exc:  # another process added it first
        if "duplicate column" not in str(exc):
            raise


class SqliteLeaseStore(GuardedUpdates):
    """Leases in a SQLite file: the run directory's ``sink.sqlite``, so the fence shares the sink's transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect(self.path)

    def _write(self, sql: str, args: tuple[object, ...]) -> bool:
        cur = self._conn.execute(sql, args)  # one statement: atomic on its own in autocommit mode
        return cur.rowcount == 1

    def create_shards(self, batch_id: str, n: int, weights: Sequence[float] | None = None) -> None:
        if n < 1:
            raise LeaseError(f"a batch needs at least one shard, not {n}")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT MAX(n_shards) FROM leases WHERE batch_id = ?", (batch_id,)).fetchone()
            if row[0] is not None and row[0] != n:
                raise LeaseError(f"batch {batch_id} already has {row[0]} shards, not {n}")
            conn.executemany("INSERT OR IGNORE INTO leases (batch_id, shard, n_shards, weight) VALUES (?, ?, ?, ?)",
                             shard_rows(batch_id, n, weights))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def claim(self, batch_id: str, owner: str, *, now: float, lease_s: float,
              expired_only: bool = False) -> Lease | None:
        conn = self._conn
        args: tuple[object, ...]
        if expired_only:  # a rescuer's look, every half second: a read, the write lock only when there is one
            where, args = EXPIRED_WHERE.replace("%s", "?"), (batch_id, now, owner)
            if conn.execute(f"SELECT 1 FROM leases WHERE {where} LIMIT 1", args).fetchone() is None:
                return None
        else:
            where, args = "batch_id = ? AND (state = 'free' OR (state = 'held' AND expires_at <= ?))", (batch_id, now)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT shard, n_shards, state, owner FROM leases WHERE {where} "
                               "ORDER BY state = 'free', weight DESC, shard LIMIT 1", args).fetchone()
            if row is None:
                conn.execute("COMMIT")
                return None
            shard, n_shards, state, old_owner = row
            (token,) = conn.execute(
                "UPDATE leases SET state = 'held', owner = ?, token = token + 1, expires_at = ?, claims = claims + 1 "
                "WHERE batch_id = ? AND shard = ? RETURNING token", (owner, now + lease_s, batch_id, shard)).fetchone()
            conn.execute("INSERT INTO lease_claims (batch_id, shard, token, owner, t, took_over_from) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (batch_id, shard, token, owner, now, old_owner if state == HELD else None))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Lease(batch_id, int(shard), int(n_shards), owner, int(token), now + lease_s)

    def check(self, lease: Lease, *, now: float) -> bool:
        return _valid(self._conn, lease, now)

    def fence(self, lease: Lease, clock: Callable[[], float]) -> Callable[[sqlite3.Connection, str], None]:
        """The sink's guard: run inside its write transaction; raises :class:`StaleLease` or logs the put."""

        def guard(conn: sqlite3.Connection, key: str) -> None:
            now = clock()
            if not _valid(conn, lease, now):
                raise StaleLease(lease, key)
            conn.execute("INSERT INTO fenced_puts (key, batch_id, shard, token, owner, t, claims_seen) "
                         "VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) FROM lease_claims))",
                         (key, lease.batch_id, lease.shard, lease.token, lease.owner, now))

        return guard

    def refuse(self, lease: Lease, key: str, *, now: float) -> None:
        self._conn.execute("INSERT INTO fence_refusals (key, batch_id, shard, token, owner, t) VALUES (?, ?, ?, ?, ?, ?)",
                           (key, lease.batch_id, lease.shard, lease.token, lease.owner, now))

    def claim_seq(self, lease: Lease) -> int:
        """The claim's number in this store's history: unique across workers (a fleet pass's number)."""
        row = self._conn.execute("SELECT seq FROM lease_claims WHERE batch_id = ? AND shard = ? AND token = ?",
                                 (lease.batch_id, lease.shard, lease.token)).fetchone()
        if row is None:
            raise LeaseError(f"no claim of shard {lease.spec} with token {lease.token}")
        return int(row[0])

    def shards(self, batch_id: str) -> list[ShardState]:
        rows = self._conn.execute(
            "SELECT batch_id, shard, n_shards, state, owner, token, expires_at, claims FROM leases "
            "WHERE batch_id = ? ORDER BY shard", (batch_id,)).fetchall()
        return [ShardState(*row) for row in rows]

    def close(self) -> None:
        self._conn.close()


def _valid(conn: sqlite3.Connection, lease: Lease, now: float) -> bool:
    row = conn.execute(f"SELECT 1 FROM leases WHERE {LEASE_WHERE} AND expires_at > ?", (*lease_row(lease), now)).fetchone()
    return row is not None
