"""A worker of a batch that lives in PostgreSQL: joins it from any machine, claims shards, runs a fenced pass on each.

``python -m batchlab.pgworker URL --batch-id ID --impl PATH [--owner W] [--lease-s L] [--folder DIR]``; and
:func:`run_fleet`, which publishes a batch and starts N of them on this machine (``run --store URL --workers N``).

The loop is the one of the run-directory fleet (issue 18 item 1), over the PostgreSQL store:

1. join the batch (:func:`batchlab.pgbatch.join_batch`: a local work folder with the spec, this worker's impl
   and the entries streamed from the store; the processor's checkpoint lives there too);
2. claim a shard (:meth:`batchlab.pgleases.PgLeaseStore.claim`, ``SKIP LOCKED``): an expired one first, else a
   free one; none claimable: every shard done -> exit 0, some held by others -> wait :data:`IDLE_POLL_S`
   (jittered) and look again (a holder may die, and its shard must then be taken over without anyone's command);
3. run the pass as a child process linked to this one (it dies with it): the processor over the shard's
   documents, with the simulated service of the batch's spec, a :class:`batchlab.pgsink.PgSink` whose every put
   is fenced by the lease in its own transaction, and the ledger as rows (:class:`batchlab.pgstore.PgLedger`);
4. renew the lease from a thread every third of its length (with jitter, 抖动); a failed renewal means the token
   moved on: the child is SIGKILLed at once;
5. the child exits cleanly: finish the shard (only if the lease is still ours), go to 2. A put refused by the
   fence ends the child with :data:`EXIT_STALE`; any other failure releases the shard and ends the worker with
   :data:`EXIT_PASS_FAILED` (another worker would fail the same way: a human must look).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

import psycopg

from .errors import EXIT_BAD_INPUT, KitError
from .leases import DONE, EXIT_STALE, FencedSink, Lease
from .ledger import Ev, Ledger
from .lifeline import hold_parent_link, parent_link
from .pgbatch import join_batch, publish_batch
from .pgleases import PgLeaseStore
from .pgsink import PgSink
from .pgstore import PgConnection, PgLedger
from .runspec import RunSpec

DEFAULT_LEASE_S = 10.0
#: How often an idle worker looks again for a claimable shard (at most; jittered): a look is one indexed query,
#: and looking often is what makes a dead worker's shard taken over soon after its expiry, and the batch's end
#: seen by every worker soon after its last shard is done.
IDLE_POLL_S = 0.5
#: The worker's exit when a pass failed otherwise (the processor raised, could not be imported).
EXIT_PASS_FAILED = 8


def run_pass(url: str, folder: Path, lease: Lease, pass_no: int) -> dict[str, Any]:
    """The child: the processor over the shard's documents, every put fenced by ``lease``; its report."""
    from .batchstream import open_checked
    from .runspec import read_spec
    from .service import SimulatedService
    from .worker import load_impl

    spec = read_spec(folder)
    entry = load_impl(spec.impl).process_documents_batch
    db = PgConnection(url)
    ledger = PgLedger(db, lease.batch_id, pass_no=pass_no)
    ledger.emit(Ev.PASS_START, t0=time.time(), batch_id=lease.batch_id, impl=str(spec.impl), crash="none", at=0,
                shard=lease.spec, owner=lease.owner, token=lease.token)
    store = PgLeaseStore(db)
    service = SimulatedService(plan=spec.plan, latency=spec.latency, ledger=cast(Ledger, ledger))
    inner = PgSink(db, lease.batch_id, ledger=ledger, pass_no=pass_no, guard=store.fence(lease, time.time))

    def refused(key: str) -> NoReturn:
        store.refuse(lease, key, now=time.time())
        ledger.emit(Ev.STOPPED, signal="stale_lease", shard=lease.spec, token=lease.token, owner=lease.owner,
                    refused_key=key)
        os._exit(EXIT_STALE)
    (folder / "state").mkdir(exist_ok=True)
    report = asyncio.run(entry(open_checked(spec.input, None), batch_id=lease.batch_id, service=service,
                               sink=FencedSink(inner, refused), state_dir=folder / "state",
                               config=dataclasses.replace(spec.config, shard=lease.spec)))
    report_dict = dict(report.to_dict()) if hasattr(report, "to_dict") else dict(report)
    ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=inner.commits)
    db.close()
    return report_dict


class Renewer(threading.Thread):
    """Renews one lease every third of its length (jittered) on a connection of its own; ``on_lost`` once if lost."""

    def __init__(self, url: str, lease: Lease, *, lease_s: float, on_lost: Callable[[], None],
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> None:
        super().__init__(daemon=True, name=f"renew-{lease.spec}")
        self.url, self.lease, self.lease_s, self.on_lost, self.clock = url, lease, lease_s, on_lost, clock
        self.rng = rng or random.Random()
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        # A server that does not answer for half a lease (a restart) is waited for: the renewal then still comes
        # before the expiry. Past that, or on any other error, the lease cannot be shown to be ours: it is lost.
        try:
            db = PgConnection(self.url, retry_s=self.lease_s / 2)
            store = PgLeaseStore(db)
            while not self.done.wait(self.lease_s / 3 * self.rng.uniform(0.8, 1.2)):
                if not store.renew(self.lease, now=self.clock(), lease_s=self.lease_s):
                    break
            else:
                db.close()
                return
            db.close()
        except psycopg.Error:
            pass
        self.lost = True
        self.on_lost()


def run_lease(url: str, folder: Path, store: PgLeaseStore, lease: Lease, *, lease_s: float) -> int:
    """One pass on a claimed shard under renewal; the child's exit code (-9 when killed for a lost lease)."""
    pass_no = store.claim_seq(lease)  # unique across every worker of the batch
    command = [sys.executable, "-m", "batchlab.pgworker", url, "--batch-id", lease.batch_id, "--folder", str(folder),
               "--run-pass", f"{lease.shard}/{lease.n_shards}", "--owner", lease.owner, "--token", str(lease.token),
               "--pass-no", str(pass_no)]
    link = parent_link()
    started: subprocess.Popen[bytes] | None = None
    with (folder / f"pass{pass_no}.stdout").open("wb") as out, (folder / f"pass{pass_no}.stderr").open("wb") as err:
        try:
            started = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **link.env}, pass_fds=link.pass_fds)
        finally:
            link.attach(started)
    proc = started
    renewer = Renewer(url, lease, lease_s=lease_s, on_lost=proc.kill)
    renewer.start()
    code = proc.wait()
    renewer.done.set()
    renewer.join()
    if renewer.lost or code == EXIT_STALE:
        print(f"worker {lease.owner}: lease on shard {lease.spec} (token {lease.token}) lost", flush=True)
    elif code == 0:
        store.finish(lease)
    else:
        store.release(lease)
    return code


def work(url: str, batch_id: str, impl: Path, *, owner: str, folder: Path, lease_s: float = DEFAULT_LEASE_S,
         join_wait_s: float = 60.0, clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> int:
    """Join the batch, then claim and run shards until every shard is done (see the module); the exit code."""
    rng = rng or random.Random()
    db = PgConnection(url)
    try:
        join_batch(db, batch_id, impl, folder, wait_s=join_wait_s)
        store = PgLeaseStore(db)
        while True:
            lease = store.claim(batch_id, owner, now=clock(), lease_s=lease_s)
            if lease is None:
                if all(s.state == DONE for s in store.shards(batch_id)):
                    return 0
                time.sleep(min(lease_s / 3, IDLE_POLL_S) * rng.uniform(0.5, 1.0))
                continue
            print(f"worker {owner}: claimed shard {lease.spec} token {lease.token}", flush=True)
            code = run_lease(url, folder, store, lease, lease_s=lease_s)
            if code not in (0, EXIT_STALE, -signal.SIGKILL):
                print(f"worker {owner}: the pass on shard {lease.spec} failed (exit {code}); see {folder}/pass*.stderr",
                      flush=True)
                return EXIT_PASS_FAILED
    finally:
        db.close()


def run_fleet(url: str, spec: RunSpec, *, workers: int, shards: int, folder: Path,
              lease_s: float = DEFAULT_LEASE_S) -> dict[str, int]:
    """``run --store URL --workers N``: publish the batch, start N workers here, wait for them; each one's exit.

    Workers started elsewhere (``python -m batchlab.pgworker URL --batch-id ID --impl PATH``) join the same
    batch at any time; this returns when the local ones are done (every shard done, or a pass failed).
    """
    publish_batch(PgConnection(url), spec, shards=shards)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for i in range(workers):
        owner = f"{os.uname().nodename}-{os.getpid()}-{i}"
        link = parent_link()
        started: subprocess.Popen[bytes] | None = None
        try:
            started = subprocess.Popen(
                [sys.executable, "-m", "batchlab.pgworker", url, "--batch-id", spec.batch_id, "--impl",
                 str(spec.impl), "--owner", owner, "--lease-s", repr(lease_s), "--folder", str(folder / owner)],
                stdin=subprocess.DEVNULL, env={**os.environ, **link.env}, pass_fds=link.pass_fds)
        finally:
            link.attach(started)
        procs[owner] = started
    return {owner: proc.wait() for owner, proc in procs.items()}


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
    parser.add_argument("--run-pass", default=None, help=argparse.SUPPRESS)  # the child: "i/n"
    parser.add_argument("--token", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--pass-no", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix=f"batchlab-{args.batch_id}-"))
    if args.run_pass is not None:
        shard, _, of = args.run_pass.partition("/")
        run_pass(args.url, folder, Lease(args.batch_id, int(shard), int(of), args.owner, args.token, 0.0),
                 args.pass_no)
        return 0
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
