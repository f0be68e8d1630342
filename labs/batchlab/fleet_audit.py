"""What a fleet's batch ended with, from the records alone: lost documents, duplicates, stale-token commits.

Independent of the fence's own check: a *stale commit* is a fenced put of shard S under token T that
saw (``claims_seen``, read in the put's transaction) a claim of S with a token above T, judged from the
``lease_claims`` history, not from the ``leases`` row the fence reads. Chaos and the tests call
:func:`audit` after every event; duplicates are puts of an identity beyond its first (upgrades excluded).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

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


def stale_commits(conn: sqlite3.Connection, batch_id: str) -> list[tuple[str, int, int]]:
    """Fenced puts whose transaction had already seen a later claim of their shard."""
    rows = conn.execute(
        "SELECT p.key, p.shard, p.token FROM fenced_puts p WHERE p.batch_id = ? AND EXISTS ("
        "SELECT 1 FROM lease_claims c WHERE c.batch_id = p.batch_id AND c.shard = p.shard "
        "AND c.token > p.token AND c.seq <= p.claims_seen)", (batch_id,)).fetchall()
    return [(str(k), int(s), int(t)) for k, s, t in rows]


def audit(run_dir: str | Path, input_path: str | Path, batch_id: str) -> Audit:
    """Lost, duplicated and stale-token-committed documents of a fleet's batch (see the module).

    Streamed, as the metrics are: the input is read one document at a time and the identities met, committed or
    not, are kept in a scratch SQLite table (:class:`~batchlab.fold_store.FoldStore`), duplicates are counted by
    SQLite, so the audit of a million-document batch does not hold the batch, its outputs or its puts in memory.
    """
    run = RunDir(Path(run_dir))
    unique = committed = 0
    lost: list[str] = []
    conn = lease_connect(run.sink)
    try:
        with FoldStore(on_disk=True) as done:
            for (ident,) in conn.execute("SELECT ident FROM outputs"):
                done.add_ident(str(ident), "")
            for doc in iter_unique(open_batch(input_path), on_disk=True):
                unique += 1
                if done.add_ident(ident_of(doc), doc.id):  # new here: no output has its identity
                    lost.append(doc.id)
                else:
                    committed += 1
        duplicates = {str(doc_id): int(n) for doc_id, n in conn.execute(
            "SELECT MIN(doc_id), COUNT(*) FROM puts WHERE upgrade = 0 GROUP BY ident HAVING COUNT(*) > 1")}
        stale = stale_commits(conn, batch_id)
        (refusals,) = conn.execute("SELECT COUNT(*) FROM fence_refusals WHERE batch_id = ?", (batch_id,)).fetchone()
        (takeovers,) = conn.execute("SELECT COUNT(*) FROM lease_claims WHERE batch_id = ? AND took_over_from "
                                    "IS NOT NULL", (batch_id,)).fetchone()
    finally:
        conn.close()
    return Audit(unique=unique, committed=committed, lost=sorted(lost), duplicates=duplicates, stale_commits=stale,
                 refusals=int(refusals), takeovers=int(takeovers))
