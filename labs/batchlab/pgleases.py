"""Shard leases in PostgreSQL: the protocol of :mod:`batchlab.leases`, for workers on several machines.

The semantics are :mod:`batchlab.leases`'s, word for word (free/held/done, a token incremented on every claim,
renew/finish/release under owner and token, a fence in the sink's transaction, the claim history). Expired shards
are claimed before free ones (a dead worker's half-done shard is taken over by the next worker that looks), then the
heaviest (the work estimated at ``create_shards``), then the lowest-numbered. What differs is how claims are kept
apart. SQLite has one writer at a time (``BEGIN IMMEDIATE``); here many claimers run at once, and each picks its row
with ``SELECT ... FOR UPDATE SKIP LOCKED``, the claim of procrastinate, River, Oban and graphile-worker: a row
another claimer is taking is skipped, not waited for, so two claimers get two different shards in one round trip
each, and never the same shard with the same token (the row lock holds until the token's increment commits).

The fence (:meth:`PgLeaseStore.fence`, a :class:`Fence`) reads the lease row ``FOR SHARE`` inside the sink's
transaction: a claim (which must lock the row ``FOR UPDATE``) waits for, or skips, a put in progress, and a put
that comes after a claim sees the new token and is refused: its check fails on the server, which aborts the
put's transaction (the check is not fetched, so a put is one round trip). Time is always passed in (``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from .lease_model import EXPIRED_WHERE
from .leases import HELD, GuardedUpdates, Lease, LeaseError, ShardState, StaleLease, shard_rows
from .pgstore import PgConnection

_VALID = "batch_id = %s AND shard = %s AND owner = %s AND token = %s AND state = 'held'"

_CLAIMABLE = "batch_id = %(batch)s AND (state = 'free' OR (state = 'held' AND expires_at <= %(now)s))"
_EXPIRED = EXPIRED_WHERE % ("%(batch)s", "%(now)s", "%(owner)s")

_CLAIM = """
WITH pick AS (
    SELECT shard, state, owner FROM leases
    WHERE {where}
    ORDER BY state = 'free', weight DESC, shard LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE leases l SET state = 'held', owner = %(owner)s, token = l.token + 1, expires_at = %(expires)s,
    claims = l.claims + 1
FROM pick WHERE l.batch_id = %(batch)s AND l.shard = pick.shard
RETURNING l.shard, l.n_shards, l.token, pick.state, pick.owner
"""


_CLAIM_ANY = _CLAIM.format(where=_CLAIMABLE)
_CLAIM_EXPIRED = _CLAIM.format(where=_EXPIRED)  # a rescuer's claim (see :data:`batchlab.lease_model.EXPIRED_WHERE`)


def _who(lease: Lease) -> tuple[str, int, str, int]:
    return (lease.batch_id, lease.shard, lease.owner, lease.token)


class PgLeaseStore(GuardedUpdates):
    """Leases in a PostgreSQL store (the tables of :data:`batchlab.pgstore.SCHEMA`), a :class:`LeaseStore`."""

    ph = "%s"

    def __init__(self, db: PgConnection, *, owns: bool = False) -> None:
        self.db = db
        self._owns = owns  #: close the connection with the store (a worker's renewal thread opens one of its own)

    def _write(self, sql: str, args: tuple[object, ...]) -> bool:
        return self.db.statement(sql, args) == 1  # one UPDATE: atomic on its own

    def create_shards(self, batch_id: str, n: int, weights: Sequence[float] | None = None) -> None:
        if n < 1:
            raise LeaseError(f"a batch needs at least one shard, not {n}")

        def create(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (batch_id,))
            row = conn.execute("SELECT MAX(n_shards) FROM leases WHERE batch_id = %s", (batch_id,)).fetchone()
            if row is not None and row[0] is not None and row[0] != n:
                raise LeaseError(f"batch {batch_id} already has {row[0]} shards, not {n}")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO leases (batch_id, shard, n_shards, weight) VALUES (%s, %s, %s, %s) "
                                "ON CONFLICT (batch_id, shard) DO NOTHING", shard_rows(batch_id, n, weights))

        self.db.transact(create)

    def claim(self, batch_id: str, owner: str, *, now: float, lease_s: float,
              expired_only: bool = False) -> Lease | None:
        expires = now + lease_s
        sql = _CLAIM_EXPIRED if expired_only else _CLAIM_ANY

        def claim(conn: psycopg.Connection[Any]) -> Lease | None:
            row = conn.execute(sql, {"batch": batch_id, "now": now, "owner": owner, "expires": expires}).fetchone()
            if row is None:
                return None
            shard, n_shards, token, state, old_owner = row
            conn.execute("INSERT INTO lease_claims (batch_id, shard, token, owner, t, took_over_from) "
                         "VALUES (%s, %s, %s, %s, %s, %s)",
                         (batch_id, shard, token, owner, now, old_owner if state == HELD else None))
            return Lease(batch_id, int(shard), int(n_shards), owner, int(token), expires)

        return self.db.transact(claim)

    def check(self, lease: Lease, *, now: float) -> bool:
        return self.db.transact(lambda c: _valid(c, lease, now, lock=""))

    def fence(self, lease: Lease, clock: Callable[[], float]) -> Fence:
        """The sink's guard: run inside its write transaction; a stale lease's put is refused (see :class:`Fence`)."""
        return Fence(lease, clock)

    def refuse(self, lease: Lease, key: str, *, now: float) -> None:
        self.db.statement(
            "INSERT INTO fence_refusals (key, batch_id, shard, token, owner, t) VALUES (%s, %s, %s, %s, %s, %s)",
            (key, lease.batch_id, lease.shard, lease.token, lease.owner, now))

    def claim_seq(self, lease: Lease) -> int:
        """The claim's number in this store's history: unique across workers (a fleet pass's number)."""
        row = self.db.transact(lambda c: c.execute(
            "SELECT seq FROM lease_claims WHERE batch_id = %s AND shard = %s AND token = %s",
            (lease.batch_id, lease.shard, lease.token)).fetchone())
        if row is None:
            raise LeaseError(f"no claim of shard {lease.spec} with token {lease.token}")
        return int(row[0])

    def shards(self, batch_id: str) -> list[ShardState]:
        rows = self.db.transact(lambda c: c.execute(
            "SELECT batch_id, shard, n_shards, state, owner, token, expires_at, claims FROM leases "
            "WHERE batch_id = %s ORDER BY shard", (batch_id,)).fetchall())
        return [ShardState(r[0], int(r[1]), int(r[2]), r[3], r[4], int(r[5]), float(r[6]), int(r[7])) for r in rows]

    def close(self) -> None:
        """Close the connection if the store owns it (``owns=True``); otherwise it is the caller's."""
        if self._owns:
            self.db.close()


#: The fence's check: the lease row read ``FOR SHARE`` when it is still the lease's, and ``1 / 0`` when it is not. A
#: division by the count, not a fetch: nothing waits for the answer (the put's statements follow in the same
#: pipeline), and a stale lease's check fails on the server, which aborts the transaction, so nothing after it
#: commits. (A constant ``1 / 0`` would be folded when the statement is planned, whatever the lease.)
_FENCE = f"""
SELECT 1 / (SELECT count(*) FROM (SELECT 1 FROM leases WHERE {_VALID} AND expires_at > %s FOR SHARE) AS held)
"""


class Fence:
    """A lease's fence, the guard of a :class:`batchlab.pgsink.PgSink`: run first in each put's transaction.

    It locks the lease row ``FOR SHARE`` if the lease is still current (owner, token, held, unexpired), so no claim
    can take the shard until the put commits, and logs the put in ``fenced_puts``; a stale lease fails the check
    with a ``division_by_zero`` error on the server, and the sink turns that error into :class:`StaleLease`
    (:meth:`refusal`). Sending the check without waiting for it saves the put a round trip (two, not three).
    """

    def __init__(self, lease: Lease, clock: Callable[[], float]) -> None:
        self.lease, self._clock = lease, clock

    def __call__(self, conn: psycopg.Connection[Any], key: str) -> None:
        lease, now = self.lease, self._clock()
        conn.execute(_FENCE, (*_who(lease), now))
        conn.execute("INSERT INTO fenced_puts (key, batch_id, shard, token, owner, t, claims_seen) "
                     "VALUES (%s, %s, %s, %s, %s, %s, (SELECT COALESCE(MAX(seq), 0) FROM lease_claims))",
                     (key, lease.batch_id, lease.shard, lease.token, lease.owner, now))

    def refusal(self, error: Exception, key: str) -> StaleLease | None:
        """The :class:`StaleLease` that ``error`` (raised by a put's transaction) means, None if it means another."""
        return StaleLease(self.lease, key) if isinstance(error, psycopg.errors.DivisionByZero) else None


def _valid(conn: psycopg.Connection[Any], lease: Lease, now: float, *, lock: str) -> bool:
    row = conn.execute(f"SELECT 1 FROM leases WHERE {_VALID} AND expires_at > %s{lock}", (*_who(lease), now)).fetchone()
    return row is not None
