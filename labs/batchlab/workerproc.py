"""A fleet worker: the lease holder that claims shards of a batch one after another and runs a pass on each.

``batchlab worker RUN_DIR --owner NAME [--lease-s L]`` (``python -m batchlab.workerproc``; ``batchlab run
--workers N`` starts N of them, each in a process group of its own). The same loop serves a batch in PostgreSQL
(``batchlab worker --store URL --batch-id ID``: :mod:`batchlab.pgworker` joins the batch, then calls
:func:`work` with a :class:`Seat` on the store): what differs between the stores is only the :class:`Seat` (the
lease store it opens, the place its pass runner writes to). Its loop:

1. claim a shard (:meth:`batchlab.leases.LeaseStore.claim`: an expired one, else a free one);
   none claimable: all done -> exit 0; some held by others -> wait :data:`IDLE_POLL_S` (jittered) and look again,
   since a held shard may expire (its holder died) and must then be taken over without anyone's command;
2. hand the lease to the pass runner (:mod:`batchlab.shardpass`), a child in this worker's process group that
   loaded the processor once and runs a pass per lease (a SIGSTOP of the group pauses both, a SIGKILL kills
   both; linked to this process, it dies with it); a runner that died is replaced at once, before the next claim;
3. renew the lease from a separate thread every third of its length, with jitter (抖动: workers that started
   together do not renew in step); a renewal that fails means the token moved on (the shard was taken over
   while this worker was paused): the runner is SIGKILLed at once;
4. when the runner says ``done``, finish the shard (only if the lease is still ours) and go to 1;
5. meanwhile a :class:`Rescuer` thread takes over another worker's *expired* shard beside the worker's own pass,
   so a dead worker's shard is taken over one look after its lease expired, not after a survivor's whole shard.

A runner that dies otherwise (the processor raised, could not be imported) releases its shard and ends this
worker with :data:`EXIT_PASS_FAILED`: another worker would fail the same way, a human must look.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .leases import DONE, EXIT_STALE, Lease, LeaseStore, SqliteLeaseStore
from .lifeline import hold_parent_link, parent_link
from .rundir import RunDir

DEFAULT_LEASE_S = 10.0
EXIT_PASS_FAILED = 8
PASS_ENDED = (0, EXIT_STALE, -signal.SIGKILL)  #: a runner's ends that are no failure: done, stale, lease lost


#: How often an idle worker looks again for a claimable shard (at most a third of a lease; jittered): a look is
#: one indexed query, and looking often is what makes a dead worker's shard taken over soon after its expiry, and
#: the batch's end seen by every worker soon after its last shard is done.
IDLE_POLL_S = 0.5


@dataclass
class Seat:
    """Where a worker claims and runs its shards: the batch's lease store and its pass runner's place.

    ``open_store(retry_s)`` opens a lease store on a connection of its own (the loop's, the renewal thread's:
    ``retry_s`` is how long a broken connection may be mended before the call fails); ``target`` and ``folder``
    are what :mod:`batchlab.shardpass` is started with (a run directory; or a store's URL and the worker's folder).
    """

    open_store: Callable[[float], LeaseStore]
    target: str
    folder: Path
    store_folder: bool = False  #: the runner needs ``--folder`` (a store's URL as target)
    pass_base: int = 0  #: pass numbers continue from this one (a run directory's earlier passes)

    @classmethod
    def run_dir(cls, run_dir: Path, *, pass_base: int = 0) -> Seat:
        sink = RunDir(run_dir).sink
        return cls(lambda _retry_s: SqliteLeaseStore(sink), str(run_dir), Path(run_dir), pass_base=pass_base)

    def runner_argv(self) -> list[str]:
        extra = ["--folder", str(self.folder)] if self.store_folder else []
        return [sys.executable, "-m", "batchlab.shardpass", self.target, *extra, "--serve"]


class Renewer(threading.Thread):
    """Renews one lease every third of its length (jittered) until stopped; on failure calls ``on_lost`` once.

    ``store``: a run directory's sink file, or a function opening a lease store on a connection of this thread's
    own, patient for half a lease (a restarting server is waited for: the renewal still comes before the expiry).
    Any error, or a renewal refused, means the lease cannot be shown to be ours: it is lost.
    """

    def __init__(self, store: Path | Callable[[float], LeaseStore], lease: Lease, *, lease_s: float,
                 on_lost: Callable[[], None], clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        super().__init__(daemon=True, name=f"renew-{lease.spec}")
        path = store
        self.open_store = (lambda _retry_s: SqliteLeaseStore(path)) if isinstance(path, Path) else path
        self.lease, self.lease_s, self.on_lost, self.clock = lease, lease_s, on_lost, clock
        self.rng = rng or random.Random()
        self.done = threading.Event()
        self.lost = False

    def run(self) -> None:
        try:
            store = self.open_store(self.lease_s / 2)
            try:
                while not self.done.wait(self.lease_s / 3 * self.rng.uniform(0.8, 1.2)):
                    if not store.renew(self.lease, now=self.clock(), lease_s=self.lease_s):
                        break
                else:
                    return
            finally:
                store.close()
        except Exception:  # noqa: BLE001 - a store unreachable for half a lease: the lease is not provably ours
            pass
        self.lost = True
        self.on_lost()


def spawn_runner(seat: Seat) -> subprocess.Popen[bytes]:
    """A pass runner that loads everything now and runs a pass per lease (:func:`batchlab.shardpass.serve_leases`)."""
    link = parent_link()
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(seat.runner_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env={**os.environ, **link.env}, pass_fds=link.pass_fds)
    finally:
        link.attach(proc)
    return proc


def _hand(proc: subprocess.Popen[bytes], lease: Lease, pass_no: int) -> bool:
    """Give the runner its lease; False if it is gone."""
    line = json.dumps({"batch_id": lease.batch_id, "shard": lease.shard, "of": lease.n_shards, "owner": lease.owner,
                       "token": lease.token, "pass": pass_no}) + "\n"
    assert proc.stdin is not None
    try:
        proc.stdin.write(line.encode("utf-8"))
        proc.stdin.flush()
    except (BrokenPipeError, OSError):
        return False
    return True


def run_lease(seat: Seat, store: LeaseStore, lease: Lease, *, lease_s: float,
              runner: subprocess.Popen[bytes] | None = None) -> tuple[int, subprocess.Popen[bytes]]:
    """One pass on a claimed shard under renewal; its exit code (0, or how the runner died: -9 when it was
    killed for a lost lease) and the runner for the next shard (a new one, started at once, if this one died)."""
    pass_no = seat.pass_base + store.claim_seq(lease)  # unique across the fleet's passes
    proc = runner if runner is not None and runner.poll() is None else spawn_runner(seat)
    if not _hand(proc, lease, pass_no):
        proc.kill()
        proc.wait()
        proc = spawn_runner(seat)
        if not _hand(proc, lease, pass_no):
            raise OSError("a shard pass could not be started")

    def lost() -> None:
        print(f"worker {lease.owner}: lease on shard {lease.spec} (token {lease.token}) lost; stopping its pass",
              flush=True)
        proc.kill()

    renewer = Renewer(seat.open_store, lease, lease_s=lease_s, on_lost=lost)
    renewer.start()
    assert proc.stdout is not None
    code = next((0 for line in proc.stdout if line.strip() == b"done"), None)
    if code is None:  # end of file: the runner died
        code = proc.wait()
    renewer.done.set()
    renewer.join()
    next_runner = proc if proc.poll() is None else spawn_runner(seat)
    if renewer.lost:
        return code, next_runner
    if code == 0:
        if not store.finish(lease):
            print(f"worker {lease.owner}: shard {lease.spec} finished but token {lease.token} is no longer current",
                  flush=True)
    elif code != EXIT_STALE:
        store.release(lease)
    return code, next_runner


class Rescuer(threading.Thread):
    """Takes over a dead worker's shard while this worker's own pass runs: one rescue at a time, on a runner of its own.

    Without it a worker looked for expired shards only between its own passes, so a shard whose holder died waited
    for the first survivor to finish its current shard: 2.46 lease lengths at 8 000 documents, where a shard of
    1 000 documents takes ~4.8 s and a lease 2 s. The rescuer looks every :data:`IDLE_POLL_S` (jittered; on SQLite
    a read, the write lock only when a shard has expired), claims only an expired shard of *another* owner
    (``claim(..., expired_only=True)``), and runs its pass beside the worker's own, so a takeover waits for the
    expiry and one look, whatever the shards' sizes. Free shards stay for the main loop: a worker runs one shard
    of its own at a time, plus at most one rescue (its service calls double meanwhile, on a latency-bound service).
    ``failed``: the exit code of a rescue pass that failed (the worker then ends with :data:`EXIT_PASS_FAILED`).
    """

    def __init__(self, seat: Seat, batch_id: str, owner: str, *, lease_s: float, clock: Callable[[], float],
                 rng: random.Random) -> None:
        super().__init__(daemon=True, name=f"rescue-{owner}")
        self.seat, self.batch_id, self.owner, self.lease_s, self.clock, self.rng = seat, batch_id, owner, lease_s, clock, rng
        self.stop = threading.Event()
        self.failed: int | None = None
        self.runner: subprocess.Popen[bytes] | None = None
        self.busy = False  #: a rescue pass is running

    def run(self) -> None:
        store = self.seat.open_store(60.0)
        try:
            while not self.stop.wait(min(self.lease_s / 3, IDLE_POLL_S) * self.rng.uniform(0.5, 1.0)):
                try:
                    lease = store.claim(self.batch_id, self.owner, now=self.clock(), lease_s=self.lease_s,
                                        expired_only=True)
                except Exception as exc:  # noqa: BLE001 - the main loop meets the same store: it decides
                    print(f"worker {self.owner}: no rescue this time ({type(exc).__name__}: {exc})", flush=True)
                    continue
                if lease is None:
                    continue
                if self.stop.is_set():  # the worker is ending: give the shard back at once instead of running it
                    store.release(lease)
                    return
                print(f"worker {self.owner}: took over expired shard {lease.spec} token {lease.token} beside its "
                      f"own pass", flush=True)
                if self.runner is None or self.runner.poll() is not None:
                    self.runner = spawn_runner(self.seat)  # known before the pass: close() can end it
                self.busy = True
                try:
                    code, self.runner = run_lease(self.seat, store, lease, lease_s=self.lease_s, runner=self.runner)
                finally:
                    self.busy = False
                if code not in PASS_ENDED:
                    print(f"worker {self.owner}: the rescue pass on shard {lease.spec} failed (exit {code})",
                          flush=True)
                    self.failed = code
                    return
        finally:
            store.close()

    def close(self) -> None:
        """Stop looking; end the rescue runner: an idle one leaves at end of file, one still in a pass is killed
        (the worker is ending on a failure: that shard's lease expires and another worker takes it over)."""
        self.stop.set()
        if self.runner is not None and self.busy:
            self.runner.kill()
        self.join()
        if self.runner is not None:  # idle now (a killed one was replaced by run_lease): end of file, it leaves
            with contextlib.suppress(OSError):
                self.runner.stdin.close()  # type: ignore[union-attr]
            self.runner.wait()


def work(seat: Seat | Path, batch_id: str, owner: str, *, lease_s: float = DEFAULT_LEASE_S, pass_base: int = 0,
         clock: Callable[[], float] = time.time, rng: random.Random | None = None) -> int:
    """Claim and run shards until every shard of the batch is done (see the module); the exit code.

    ``seat``: where (a run directory's path, with ``pass_base``, or a :class:`Seat` of either store).
    """
    seat = Seat.run_dir(seat, pass_base=pass_base) if isinstance(seat, Path) else seat
    rng = rng or random.Random()
    store = seat.open_store(60.0)
    runner = spawn_runner(seat)
    rescuer = Rescuer(seat, batch_id, owner, lease_s=lease_s, clock=clock, rng=random.Random(rng.random()))
    rescuer.start()
    try:
        while rescuer.failed is None:
            lease = store.claim(batch_id, owner, now=clock(), lease_s=lease_s)
            if lease is None:
                if all(s.state == DONE for s in store.shards(batch_id)):
                    return 0
                time.sleep(min(lease_s / 3, IDLE_POLL_S) * rng.uniform(0.5, 1.0))
                continue
            print(f"worker {owner}: claimed shard {lease.spec} token {lease.token}", flush=True)
            code, runner = run_lease(seat, store, lease, lease_s=lease_s, runner=runner)
            if code not in PASS_ENDED:
                print(f"worker {owner}: the pass on shard {lease.spec} failed (exit {code}); see "
                      f"{seat.folder}/pass*.stderr", flush=True)
                return EXIT_PASS_FAILED
        print(f"worker {owner}: see {seat.folder}/pass*.stderr", flush=True)
        return EXIT_PASS_FAILED
    finally:
        rescuer.close()
        store.close()
        if runner.stdin is not None:
            with contextlib.suppress(OSError):
                runner.stdin.close()  # end of file: the runner leaves
        runner.wait()


def main(argv: list[str] | None = None) -> int:
    hold_parent_link()  # a worker started by `batchlab run --workers` dies with it
    parser = argparse.ArgumentParser(prog="batchlab worker")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--owner", default=f"w{os.getpid()}")
    parser.add_argument("--lease-s", type=float, default=DEFAULT_LEASE_S)
    parser.add_argument("--pass-base", type=int, default=0, help="pass numbers continue from this one")
    args = parser.parse_args(argv)
    from .runspec import read_spec

    return work(args.run_dir, read_spec(args.run_dir).batch_id, args.owner, lease_s=args.lease_s,
                pass_base=args.pass_base)


if __name__ == "__main__":
    sys.exit(main())
