"""``batchlab run --workers N`` and ``batchlab worker``: the command line of :mod:`batchlab.fleet`.

Kept apart from :mod:`batchlab.cli.commands` so the one-worker ``run`` (the lesson's) reads as it did.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from .commands import _check_run_dir_input, run_spec

#: The run-directory lock's role while a worker started by hand holds it (others started by hand join it).
WORKER_ROLE = "batchlab worker"


def cmd_run_workers(args: argparse.Namespace) -> int:
    """The batch shared by ``--workers`` lease-holding workers under this command's run-directory lock."""
    from ..documents import open_batch
    from ..fleet import run_fleet
    from ..fleet_audit import audit
    from ..metrics import format_table, metrics_for_run

    if args.crash != "none":
        raise UsageError("--crash plans one worker's crash; with --workers, kill workers instead "
                         "(`batchlab chaos --workers N`)", code="usage_error", details={"crash": args.crash},
                         hints=["Drop --crash, or run without --workers."])
    header = open_batch(args.input).header
    run = Path(args.run_dir)
    _check_run_dir_input(run, args.input)
    spec = run_spec(args, run, header.batch_id)
    result = run_fleet(spec, workers=args.workers, lease_s=args.lease_s, shards=args.shards,
                       timeout_s=args.timeout)
    print("\n".join(result.lines()))
    print(audit(run, args.input, spec.batch_id).line())
    print(format_table(metrics_for_run(run)))
    return EXIT_OK if result.complete else EXIT_FAILED


def cmd_run_store(args: argparse.Namespace) -> int:
    """``run --store URL --workers N``: the batch published into PostgreSQL and shared by N local workers there.

    ``--run-dir`` is only these workers' local work folder; the batch (documents, leases, sink, ledger) lives in
    the store, where ``batchlab worker --store URL --batch-id ID`` on any machine joins it.
    """
    from ..documents import open_batch
    from .store_cmds import run_store

    if args.crash != "none":
        raise UsageError("--crash plans one worker's crash; with --store, kill workers instead", code="usage_error",
                         details={"crash": args.crash}, hints=["Drop --crash."])
    from ..fleet_figures import default_shards

    stream = open_batch(args.input)
    run = Path(args.run_dir)
    spec = run_spec(args, run, stream.header.batch_id)
    shards = args.shards or default_shards(args.workers, len(stream), spec.config.concurrency)
    return run_store(spec, url=args.store, workers=args.workers, shards=shards, lease_s=args.lease_s, folder=run)


def cmd_worker(args: argparse.Namespace) -> int:
    """One lease-holding worker joining the batch of a run directory (:mod:`batchlab.workerproc`).

    With ``--store URL --batch-id ID`` it joins a batch in PostgreSQL instead
    (:func:`batchlab.cli.store_cmds.cmd_worker_store`). It joins a directory a fleet or another such worker holds (the lock's role is
    :data:`batchlab.fleet.FLEET_ROLE` or :data:`WORKER_ROLE`); a free one it locks for its own life; one a
    single-pass ``batchlab run`` holds (unfenced) it refuses with ``run_dir_busy``.
    """
    from ..fleet import FLEET_ROLE
    from ..rundir import RunDir
    from ..runlock import DEFAULT_LOCK_WAIT_S, RunDirLock, lock_is_held, read_holder
    from ..workerproc import main

    if args.store:
        from .store_cmds import cmd_worker_store

        return cmd_worker_store(args)
    if args.run_dir is None:
        raise UsageError("worker needs a run directory, or --store URL --batch-id ID", code="usage_error",
                         details={}, hints=["batchlab worker runs/big", "batchlab worker --store URL --batch-id ID"])
    run = RunDir(Path(args.run_dir))
    if not run.spec.exists():
        raise UsageError(f"{args.run_dir} is not a run directory", code="not_a_run",
                         details={"run_dir": str(args.run_dir)},
                         hints=["Start the batch with `batchlab run --workers N` first."])
    argv = [str(args.run_dir), "--lease-s", repr(args.lease_s)] + (["--owner", args.owner] if args.owner else [])
    if lock_is_held(run.path) and read_holder(run.lock).get("role") in (FLEET_ROLE, WORKER_ROLE):
        return main(argv)
    wait = DEFAULT_LOCK_WAIT_S if args.wait is None else args.wait
    with RunDirLock(run.path, role=WORKER_ROLE).acquire(wait):  # free: ours; a single pass: busy
        return main(argv)


def add_arguments(run: argparse.ArgumentParser, sub: Any) -> None:
    """``run --workers/--shards/--lease-s`` and the ``worker`` verb."""
    from ..workerproc import DEFAULT_LEASE_S

    run.add_argument("--workers", type=int, default=1,
                     help="share the batch among N lease-holding worker processes (default 1: one pass)")
    run.add_argument("--shards", type=int, default=0, help="with --workers: shards of the batch (default 2 per worker)")
    run.add_argument("--lease-s", type=float, default=DEFAULT_LEASE_S,
                     help="with --workers: a shard lease's length in seconds (renewed every third of it)")
    run.add_argument("--store", default=None, metavar="URL",
                     help="with --workers: the batch in a PostgreSQL store (postgresql://...), joinable from any "
                          "machine by `batchlab worker --store URL --batch-id ID`")
    p = sub.add_parser("worker", help="one lease-holding worker joining a run directory's --workers batch "
                                      "(or a PostgreSQL store's)")
    p.add_argument("run_dir", type=Path, nargs="?", default=None)
    p.add_argument("--store", default=None, metavar="URL", help="join a batch in a PostgreSQL store instead")
    p.add_argument("--batch-id", default=None, help="with --store: the batch to join")
    p.add_argument("--impl", type=Path, default=None, help="with --store: the processor module (default: reference)")
    p.add_argument("--folder", type=Path, default=None, help="with --store: local work folder (default: a temp one)")
    p.add_argument("--owner", default=None, help="this worker's name in the lease table (default w<pid>)")
    p.add_argument("--lease-s", type=float, default=DEFAULT_LEASE_S)
    p.add_argument("--wait", type=float, default=None,
                   help="seconds to wait for a run directory a single-pass `batchlab run` holds (default 3)")
    p.set_defaults(func=cmd_worker)
