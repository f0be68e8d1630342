"""``batchlab run --workers N``: N lease-holding workers share one batch in one run directory.

The fleet is the ``batchlab run`` that owns the batch: it holds the run directory's lock
(:class:`batchlab.runlock.RunDirLock`, so a second ``batchlab run`` on it is refused as busy), writes the
spec, creates the batch's shards in the lease table of the run's ``sink.sqlite`` and starts N
:mod:`batchlab.workerproc` processes, each in a process group of its own and linked to this process (they die
with it). Nobody assigns shards: each worker claims them. A worker that dies by a signal is replaced by a new
one (``respawn``), but its shard does not wait for that: the others take it over once its lease expires.
The batch is over when every worker has exited (they exit once every shard is done, or on a pass that failed).

``shards`` defaults to up to two per worker (:func:`default_shards`): small shards are how the long tail is
cut (the last shard to finish is half a worker's share, not a whole one; every shard costs its pass a read of
the whole input, so not more), but not smaller than
:data:`MIN_SHARD_WAVES` windows of documents, whose filling and draining would cost more than the tail.
That arithmetic, and how a batch ended (:class:`FleetResult`, :func:`alone_tail`), is pure and lives in
:mod:`batchlab.fleet_figures`; its names are importable from here too.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .batchstream import open_checked
from .childproc import kill_group
from .fleet_figures import MIN_SHARD_WAVES, SHARDS_PER_WORKER, FleetResult, alone_tail, default_shards
from .leases import DONE, HELD, ShardState, SqliteLeaseStore
from .ledger import iter_events
from .lifeline import parent_link
from .rundir import RunDir
from .runlock import RunDirLock
from .runner import prepare
from .runspec import RunSpec
from .sink import connect
from .worker import INPUT_CHECKED
from .workerproc import DEFAULT_LEASE_S

__all__ = ["FLEET_ROLE", "MIN_SHARD_WAVES", "SHARDS_PER_WORKER", "Fleet", "FleetHome", "FleetResult", "RunDirHome",
           "alone_tail", "default_shards", "run_fleet", "shard_weights"]

#: The run-directory lock's role while a fleet holds it: `batchlab worker` joins a directory held with it.
FLEET_ROLE = "batchlab run --workers"


class FleetHome(Protocol):
    """Where a fleet's batch lives, as the fleet sees it: a run directory (:class:`RunDirHome`) or a PostgreSQL
    store (:class:`batchlab.pgfleet.StoreHome`). The fleet itself (spawn, respawn, signals, the end) is the same."""

    logs: Path  #: each worker's log, ``NAME.log``

    def prepare(self, fleet: Fleet) -> None:
        """Before the workers: the batch's shards (``fleet.shards`` set to their count) and what passes need."""

    def worker_argv(self, name: str, lease_s: float) -> list[str]: ...
    def owner(self, name: str) -> str: ...
    def shard_states(self) -> list[ShardState]: ...
    def events(self) -> Iterable[Mapping[str, Any]]: ...
    def quiet(self, shard: int | None, wait_s: float) -> bool:
        """Whether no worker is frozen inside a write transaction that would stall the others (``shard``'s)."""


class RunDirHome:
    """A run directory's batch: spec, shards in ``sink.sqlite``'s lease table, ``batchlab.workerproc`` workers."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.run = RunDir(Path(spec.run_dir))
        self.logs = self.run.path / "workers"
        self.base = 0

    def prepare(self, fleet: Fleet) -> None:
        """Spec, shards, the checkpoint file (the caller holds the run directory's lock)."""
        prepare(self.spec)
        connect(self.run.sink).close()  # schema and WAL before N processes open it
        store = SqliteLeaseStore(self.run.sink)
        try:
            documents = open_checked(self.spec.input, self.run.path / INPUT_CHECKED)  # the runners trust its memo
            if not fleet.shards:
                fleet.shards = default_shards(fleet.workers, len(documents), self.spec.config.concurrency)
            existing = store.shards(self.spec.batch_id)
            if existing:  # a run directory's batch keeps its shards (their checkpoints are per shard)
                fleet.shards = existing[0].n_shards
            checkpoint = subprocess.Popen([sys.executable, "-m", "batchlab.shardpass", str(self.run.path),
                                           "--prepare"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            weights = None if existing else shard_weights(self.spec, fleet.shards)  # meanwhile
            store.create_shards(self.spec.batch_id, fleet.shards, weights)
        finally:
            store.close()
        self.base = max((int(e.get("pass") or 0) for e in iter_events(self.run.ledger)), default=0)
        try:
            checkpoint.wait(timeout=120)
        except subprocess.TimeoutExpired:
            checkpoint.kill()
            checkpoint.wait()

    def worker_argv(self, name: str, lease_s: float) -> list[str]:
        return [sys.executable, "-m", "batchlab.workerproc", str(self.run.path), "--owner", name,
                "--lease-s", repr(lease_s), "--pass-base", str(self.base)]

    def owner(self, name: str) -> str:
        return name

    def shard_states(self) -> list[ShardState]:
        store = SqliteLeaseStore(self.run.sink)
        try:
            return store.shards(self.spec.batch_id)
        finally:
            store.close()

    def events(self) -> Iterable[Mapping[str, Any]]:
        return iter_events(self.run.ledger)

    def quiet(self, shard: int | None, wait_s: float) -> bool:
        """Whether another writer can get the run's SQLite write lock within ``wait_s`` (any shard: one lock)."""
        conn = sqlite3.connect(str(self.run.sink), isolation_level=None, timeout=wait_s)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()


@dataclass
class Fleet:
    """The running workers of one batch (see the module); tests and chaos SIGKILL/SIGSTOP them by name.

    ``home``: where the batch lives (default: the spec's run directory, :class:`RunDirHome`).
    """

    spec: RunSpec
    workers: int
    lease_s: float = DEFAULT_LEASE_S
    shards: int = 0
    respawn: bool = True
    home: FleetHome | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    exits: dict[str, int | None] = field(default_factory=dict)
    respawned: int = 0

    def __post_init__(self) -> None:
        self.where: FleetHome = self.home or RunDirHome(self.spec)
        self._t0 = time.time()
        self._pending: list[tuple[float, str]] = []  #: (not before, name): replacements of killed workers

    @property
    def run(self) -> RunDir:
        """The run directory of a run-directory fleet (tests read its files)."""
        assert isinstance(self.where, RunDirHome), "a fleet on a store has no run directory"
        return self.where.run

    def start(self) -> None:
        """The batch's shards (and whatever its home needs), then the workers."""
        self.where.prepare(self)
        self.where.logs.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        for i in range(1, self.workers + 1):
            self._spawn(f"w{i}")

    def _spawn(self, name: str) -> None:
        link = parent_link()
        log = (self.where.logs / f"{name}.log").open("ab")
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc = subprocess.Popen(
                self.where.worker_argv(name, self.lease_s),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env, **link.env}, pass_fds=link.pass_fds)
        finally:
            log.close()
            link.attach(proc)
        self.procs[name] = proc

    def owner(self, name: str) -> str:
        """Worker ``name``'s owner in the lease table."""
        return self.where.owner(name)

    def signal(self, name: str, signum: int) -> None:
        """Send ``signum`` to worker ``name``'s whole process group (the worker and its pass)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signum)

    def write_lock_free(self, wait_s: float = 1.0, shard: int | None = None) -> bool:
        """Whether no worker is frozen inside a write transaction (``shard``'s, on a store).

        A worker SIGSTOPped inside a put's transaction keeps SQLite's one write lock (on PostgreSQL, its lease
        row's share lock, which a claim skips) and stalls the others until it is continued: chaos and the tests
        freeze a zombie only outside a transaction.
        """
        return self.where.quiet(shard, wait_s)

    def alive(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.poll() is None]

    def step(self) -> bool:
        """Reap exited workers, replace the ones killed by a signal while shards remain; False once all are gone."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None or name in self.exits:
                continue
            self.exits[name] = code
            if code < 0 and self.respawn and not self.done():
                # replaced once its leases have expired: the newcomer then claims the dead worker's shard first
                owner = self.owner(name)
                held = [s.expires_at for s in self.shard_states() if s.owner == owner and s.state == HELD]
                self._pending.append((max(held, default=0.0), f"{name.split('.')[0]}.{len(self.procs)}"))
        for due in [p for p in self._pending if p[0] <= time.time()]:
            self._pending.remove(due)
            self.respawned += 1
            self._spawn(due[1])
        return bool(self.alive()) or bool(self._pending and not self.done())

    def done(self) -> bool:
        return all(s.state == DONE for s in self.shard_states())

    def shard_states(self) -> list[ShardState]:
        return self.where.shard_states()

    def close(self) -> None:
        """Kill whatever still runs (its group) and reap it."""
        for proc in self.procs.values():
            if proc.poll() is None:
                kill_group(proc)
            proc.wait()

    def run_to_end(self, timeout_s: float, poll_s: float = 0.1) -> None:
        """Start, then step until every worker is gone (or ``timeout_s``); whatever happens, kill what is left."""
        try:
            self.start()
            deadline = time.time() + timeout_s
            while self.step() and time.time() < deadline:
                time.sleep(poll_s)
        finally:
            self.close()

    def result(self) -> FleetResult:
        self.step()
        base = self.where.base if isinstance(self.where, RunDirHome) else 0
        return FleetResult(exits=dict(self.exits), shards=self.shard_states(), seconds=time.time() - self._t0,
                           tail_s=alone_tail(self.where.events(), since_pass=base), respawned=self.respawned)


def run_fleet(spec: RunSpec, *, workers: int, lease_s: float = DEFAULT_LEASE_S, shards: int = 0,
              timeout_s: float = 600.0, poll_s: float = 0.1) -> FleetResult:
    """The whole batch with ``workers`` workers, under the run directory's lock (busy: ``run_dir_busy``)."""
    with RunDirLock(Path(spec.run_dir), role=FLEET_ROLE).acquire(spec.lock_wait_s):
        fleet = Fleet(spec, workers, lease_s=lease_s, shards=shards)
        fleet.run_to_end(timeout_s, poll_s)
        return fleet.result()


def shard_weights(spec: RunSpec, shards: int) -> list[float] | None:
    """Each shard's planned work, as the spec's processor shards it (:mod:`batchlab.shardweights`), or None."""
    from .shardweights import estimate

    return estimate(spec.input, spec.impl, spec.config.layer, shards)
