"""A worker of a batch that lives in PostgreSQL: joins it from any machine, claims shards, runs a fenced pass on each.

``python -m batchlab.pgworker URL --batch-id ID --impl PATH [--owner W] [--lease-s L] [--folder DIR]``
(``batchlab worker --store URL --batch-id ID``); :func:`batchlab.pgfleet.run_fleet` publishes a batch and starts N
of them on this machine (``run --store URL --workers N``): apart, so that a worker never imports the fleet's modules.

It first joins the batch (:func:`batchlab.pgbatch.join_batch`: a local work folder with the spec, this worker's
impl and the entries streamed from the store; the processor's checkpoint lives there too), then runs the very
loop of the run-directory fleet (:func:`batchlab.workerproc.work`: claim, a long-lived pass runner, renewal from
a thread every third of the lease with jitter, finish) on a :class:`~batchlab.workerproc.Seat` of the store: its
lease store is :class:`batchlab.pgleases.PgLeaseStore` (claims ``SKIP LOCKED``), and its pass runner
(:mod:`batchlab.shardpass` started with the URL) writes through :class:`batchlab.pgplace.StorePlace`: a
:class:`batchlab.pgsink.PgSink` whose every put is fenced by the lease in its own transaction, and the ledger as
rows (:class:`batchlab.pgledger.PassLedger`: a service call's events written with the next put's).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import workerproc
from .errors import EXIT_BAD_INPUT, KitError
from .lifeline import hold_parent_link
from .pgbatch import join_batch
from .pgleases import PgLeaseStore
from .pgplace import StorePlace
from .pgstore import PgConnection
from .workerproc import DEFAULT_LEASE_S, EXIT_PASS_FAILED, IDLE_POLL_S, Seat

__all__ = ["DEFAULT_LEASE_S", "EXIT_PASS_FAILED", "IDLE_POLL_S", "StorePlace", "store_seat", "work"]


def store_seat(url: str, folder: Path) -> Seat:
    """The :class:`~batchlab.workerproc.Seat` of a worker on a store: leases there, its runner on ``folder``."""
    return Seat(lambda retry_s: PgLeaseStore(PgConnection(url, retry_s=retry_s), owns=True), url, Path(folder),
                store_folder=True)


def work(url: str, batch_id: str, impl: Path, *, owner: str, folder: Path, lease_s: float = DEFAULT_LEASE_S,
         join_wait_s: float = 60.0, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> int:
    """Join the batch, then claim and run shards until every shard is done (see the module); the exit code."""
    db = PgConnection(url)
    try:
        join_batch(db, batch_id, impl, folder, wait_s=join_wait_s)
    finally:
        db.close()
    return workerproc.work(store_seat(url, folder), batch_id, owner, lease_s=lease_s, clock=clock, rng=rng)


def main(argv: list[str] | None = None) -> int:
    hold_parent_link()  # a worker (or a pass) started with a link dies with its parent
    parser = argparse.ArgumentParser(prog="python -m batchlab.pgworker")
    parser.add_argument("url")
    parser.add_argument("--batch-id", required=True)
    parser.add_argument("--impl", type=Path, default=None)
    parser.add_argument("--owner", default=f"w{os.getpid()}")
    parser.add_argument("--lease-s", type=float, default=DEFAULT_LEASE_S)
    parser.add_argument("--folder", type=Path, default=None, help="the local work folder (default: a new temporary one)")
    parser.add_argument("--join-wait-s", type=float, default=60.0, help="how long to wait for a batch still loading")
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix=f"batchlab-{args.batch_id}-"))
    if args.impl is None:
        parser.error("--impl is required to join a batch")
    try:
        return work(args.url, args.batch_id, args.impl, owner=args.owner, folder=folder, lease_s=args.lease_s,
                    join_wait_s=args.join_wait_s)
    except KitError as exc:  # no such batch: the unified error, not a traceback
        print(exc.to_json())
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
