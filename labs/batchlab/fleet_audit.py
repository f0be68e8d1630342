"""What a fleet's batch ended with, from the records alone: lost documents, duplicates, stale-token commits.

Independent of the fence's own check: a *stale commit* is a fenced put of shard S under token T that
saw (``claims_seen``, read in the put's transaction) a claim of S with a token above T, judged from the
``lease_claims`` history, not from the ``leases`` row the fence reads. Chaos and the tests call
:func:`audit` after every event; duplicates are puts of an identity beyond its first (upgrades excluded).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .documents import load_batch
from .leases import connect as lease_connect
from .rundir import RunDir
from .sink import read_outputs, read_puts


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
    """Lost, duplicated and stale-token-committed documents of a fleet's batch (see the module)."""
    run = RunDir(Path(run_dir))
    inventory = load_batch(input_path).inventory()
    names = {e.ident: e.document.id for e in inventory.entries if e.ident is not None and e.document is not None}
    writes = Counter(p["ident"] for p in read_puts(run.sink) if not p["upgrade"])
    committed = {rec.ident for rec in read_outputs(run.sink)}
    conn = lease_connect(run.sink)
    try:
        stale = stale_commits(conn, batch_id)
        (refusals,) = conn.execute("SELECT COUNT(*) FROM fence_refusals WHERE batch_id = ?", (batch_id,)).fetchone()
        (takeovers,) = conn.execute("SELECT COUNT(*) FROM lease_claims WHERE batch_id = ? AND took_over_from "
                                    "IS NOT NULL", (batch_id,)).fetchone()
    finally:
        conn.close()
    return Audit(unique=inventory.unique, committed=len(committed & inventory.idents),
                 lost=sorted(names[i] for i in inventory.idents - committed),
                 duplicates={names.get(i, i): n for i, n in writes.items() if n > 1},
                 stale_commits=stale, refusals=int(refusals), takeovers=int(takeovers))
