"""``run --store URL --workers N``: the fleet of :mod:`batchlab.fleet` on a batch that lives in PostgreSQL.

The fleet (spawn, respawn of a worker killed by a signal, signals by name, the end) is the run directory's;
only its home differs (:class:`StoreHome`): the batch is published into the store (:func:`batchlab.pgbatch.
publish_batch`), each worker is a ``python -m batchlab.pgworker`` with a local folder of its own under
``folder`` and an owner name unique across machines (``host-pid-wN``), and the shard rows and the ledger are
read from the store. Workers started elsewhere (``batchlab worker --store URL --batch-id ID``) join the same
batch at any time; the fleet ends when its own workers are gone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from .batchstream import open_batch
from .fleet import Fleet
from .fleet_figures import default_shards
from .leases import ShardState
from .pgbatch import publish_batch
from .pgleases import PgLeaseStore
from .pgstore import PgConnection, iter_events
from .runspec import RunSpec
from .workerproc import DEFAULT_LEASE_S


class StoreHome:
    """A PostgreSQL store's batch, as a :class:`batchlab.fleet.FleetHome`."""

    def __init__(self, url: str, spec: RunSpec, folder: Path, *, retry_s: float = 60.0) -> None:
        self.url, self.spec, self.folder = url, spec, Path(folder)
        self.logs = self.folder / "workers"
        self.db = PgConnection(url, retry_s=retry_s)
        self.prefix = f"{os.uname().nodename}-{os.getpid()}"

    def prepare(self, fleet: Fleet) -> None:
        """Publish the batch (its documents streamed in) and its shards; a published batch keeps its shard count."""
        existing = PgLeaseStore(self.db).shards(self.spec.batch_id)
        if existing:
            fleet.shards = existing[0].n_shards
        elif not fleet.shards:
            fleet.shards = default_shards(fleet.workers, len(open_batch(self.spec.input)),
                                          self.spec.config.concurrency)
        publish_batch(self.db, self.spec, shards=fleet.shards)

    def worker_argv(self, name: str, lease_s: float) -> list[str]:
        return [sys.executable, "-m", "batchlab.pgworker", self.url, "--batch-id", self.spec.batch_id, "--impl",
                str(self.spec.impl), "--owner", self.owner(name), "--lease-s", repr(lease_s),
                "--folder", str(self.folder / name)]

    def owner(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def shard_states(self) -> list[ShardState]:
        return PgLeaseStore(self.db).shards(self.spec.batch_id)

    def events(self) -> Iterable[Mapping[str, Any]]:
        return iter_events(self.db, self.spec.batch_id)

    def quiet(self, shard: int | None, wait_s: float) -> bool:
        """Whether ``shard``'s lease row can be locked now: no worker sits frozen in a fenced put (its share lock
        would make every claim skip the row, and the shard could never be taken over while it sleeps)."""
        if shard is None:
            return True
        try:
            self.db.transact(lambda c: c.execute(
                "SELECT 1 FROM leases WHERE batch_id = %s AND shard = %s FOR UPDATE NOWAIT",
                (self.spec.batch_id, shard)).fetchone())
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def close(self) -> None:
        self.db.close()


def run_fleet(url: str, spec: RunSpec, *, workers: int, shards: int, folder: Path,
              lease_s: float = DEFAULT_LEASE_S, timeout_s: float = 3600.0) -> dict[str, int | None]:
    """Publish the batch, run ``workers`` local workers (respawning the ones killed), wait for them; each one's exit."""
    home = StoreHome(url, spec, folder)
    fleet = Fleet(spec, workers, lease_s=lease_s, shards=shards, home=home)
    try:
        fleet.run_to_end(timeout_s)
        fleet.step()
        return dict(fleet.exits)
    finally:
        home.close()
