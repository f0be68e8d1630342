"""What a fleet's batch ended with, from the records alone: lost documents, duplicates, stale-token commits.

Independent of the fence's own check: a *stale commit* is a fenced put of shard S under token T that
saw (``claims_seen``, read in the put's transaction) a claim of S with a token above T, judged from the
``lease_claims`` history, not from the ``leases`` row the fence reads. Chaos and the tests call
:func:`audit` (a run directory) or :func:`audit_store` (a PostgreSQL store: the same tables, the same
queries) after every event; duplicates are puts of an identity beyond its first (upgrades excluded).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .documents import ident_of, open_batch
from .fold_store import FoldStore
from .inventory import iter_unique
from .leases import connect as lease_connect
from .rundir import RunDir


@dataclass
class Audit:
    """The batch as the run directory's sink and lease tables have it."""

    unique: int
    committed: int
    lost: list[str] = field(default_factory=list)  #: not committed (yet, while the batch runs)
    duplicates: dict[str, int] = field(default_factory=dict)
    stale_commits: list[tuple[str, int, int]] = field(default_factory=list)  #: (key, shard, token)
    refusals: int = 0
    takeovers: int = 0

    @property
    def extra_puts(self) -> int:
        """Puts beyond each identity's first: the work redone (bounded by the documents in flight at kills)."""
        return sum(n - 1 for n in self.duplicates.values())

    def line(self) -> str:
        return (f"{self.committed}/{self.unique} committed, {self.extra_puts} duplicate puts, "
                f"{len(self.stale_commits)} stale-token commits, {self.refusals} refused, {self.takeovers} takeovers")


#: ``query(sql, args)``: the rows of one SQL statement written with ``?`` placeholders (a store's own adapts them).
Query = Callable[[str, tuple[object, ...]], Iterable[tuple[Any, ...]]]

_STALE = ("SELECT p.key, p.shard, p.token FROM fenced_puts p WHERE p.batch_id = ? AND EXISTS ("
          "SELECT 1 FROM lease_claims c WHERE c.batch_id = p.batch_id AND c.shard = p.shard "
          "AND c.token > p.token AND c.seq <= p.claims_seen)")


def stale_commits(conn: sqlite3.Connection, batch_id: str) -> list[tuple[str, int, int]]:
    """Fenced puts whose transaction had already seen a later claim of their shard."""
    return [(str(k), int(s), int(t)) for k, s, t in conn.execute(_STALE, (batch_id,)).fetchall()]


def audit(run_dir: str | Path, input_path: str | Path, batch_id: str) -> Audit:
    """Lost, duplicated and stale-token-committed documents of a run directory's fleet batch (see the module)."""
    conn = lease_connect(RunDir(Path(run_dir)).sink)
    try:
        return audit_rows(lambda sql, args: conn.execute(sql, args).fetchall(), input_path, batch_id,
                          sink_by_batch=False)
    finally:
        conn.close()


def audit_rows(query: Query, input_path: str | Path, batch_id: str, *, sink_by_batch: bool) -> Audit:
    """The audit over any store's tables (a run directory's ``sink.sqlite``, a PostgreSQL store: the same columns).

    Streamed, as the metrics are: the input is read one document at a time and the identities met, committed or
    not, are kept in a scratch SQLite table (:class:`~batchlab.fold_store.FoldStore`), duplicates are counted by
    the store, so the audit of a million-document batch does not hold the batch, its outputs or its puts in memory.
    ``sink_by_batch``: the sink's ``outputs`` and ``puts`` hold many batches (a store's), filtered by ``batch_id``;
    a run directory's sink is its one batch's.
    """
    where, args = (" WHERE batch_id = ?", (batch_id,)) if sink_by_batch else ("", ())
    unique = committed = 0
    lost: list[str] = []
    with FoldStore(on_disk=True) as done:
        for (ident,) in query(f"SELECT ident FROM outputs{where}", args):
            done.add_ident(str(ident), "")
        for doc in iter_unique(open_batch(input_path), on_disk=True):
            unique += 1
            if done.add_ident(ident_of(doc), doc.id):  # new here: no output has its identity
                lost.append(doc.id)
            else:
                committed += 1
    duplicates = {str(doc_id): int(n) for doc_id, n in query(
        f"SELECT MIN(doc_id), COUNT(*) FROM puts{where or ' WHERE TRUE'} AND NOT upgrade GROUP BY ident "
        "HAVING COUNT(*) > 1", args)}
    stale = [(str(k), int(s), int(t)) for k, s, t in query(_STALE, (batch_id,))]
    ((refusals,),) = query("SELECT COUNT(*) FROM fence_refusals WHERE batch_id = ?", (batch_id,))
    ((takeovers,),) = query("SELECT COUNT(*) FROM lease_claims WHERE batch_id = ? AND took_over_from "
                            "IS NOT NULL", (batch_id,))
    return Audit(unique=unique, committed=committed, lost=sorted(lost), duplicates=duplicates, stale_commits=stale,
                 refusals=int(refusals), takeovers=int(takeovers))


def audit_store(url: str, input_path: str | Path, batch_id: str) -> Audit:
    """The same audit of a batch in a PostgreSQL store (psycopg loaded only here: the ``postgres`` extra)."""
    from .pgstore import PgConnection

    db = PgConnection(url)
    try:
        def query(sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
            return db.transact(lambda c: c.execute(sql.replace("?", "%s"), args).fetchall())

        return audit_rows(query, input_path, batch_id, sink_by_batch=True)
    finally:
        db.close()
