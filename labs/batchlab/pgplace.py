"""Where a pass of a fleet worker on a PostgreSQL store writes: the store's ledger, sink and leases.

Its own module so that a pass runner (:mod:`batchlab.shardpass` started with a store's URL) imports only what a
pass on the store needs (psycopg and the store's sink, ledger and leases), not the worker's and the fleet's
modules: 4 workers and 4 runners start together on two shared cores, and the first passes run meanwhile.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .leases import Lease
from .pgleases import PgLeaseStore
from .pgledger import PassLedger
from .pgsink import PgSink
from .pgstore import PgConnection
from .shardpass import PassIO


class StorePlace:
    """Where a pass on a PostgreSQL store writes (a :class:`batchlab.shardpass.Place`): the store's ledger, sink and
    leases, on one connection kept by the pass runner from shard to shard; the spec and the processor's checkpoint
    in the worker's local ``folder`` (written by :func:`batchlab.pgbatch.join_batch`)."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, Path(folder)
        self._db: PgConnection | None = None

    def open(self, spec: Any, lease: Lease, pass_no: int) -> PassIO:
        if self._db is None:
            self._db = PgConnection(self.url)
        db = self._db
        ledger = PassLedger(db, lease.batch_id, pass_no=pass_no)
        store = PgLeaseStore(db)
        sink = PgSink(db, lease.batch_id, ledger=ledger, pass_no=pass_no, guard=store.fence(lease, time.time),
                      shard=(lease.shard, lease.n_shards))
        return PassIO(ledger, store, sink, self.folder / "state", close=ledger.close)
