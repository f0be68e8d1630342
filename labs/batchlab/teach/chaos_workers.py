"""``batchlab chaos RUN_DIR --workers N``: random SIGKILLs of fleet workers and one zombie, checked after each.

The same on a PostgreSQL store (``--store URL --batch-id ID``, :class:`ChaosTarget`), where ``--restart-server
CMD`` also restarts the server once in the middle (the workers' connections break; they reconnect and go on).

While a fleet (:mod:`batchlab.fleet`, respawning the workers it loses) runs a batch, this SIGKILLs a random
worker's process group at random instants, and once, after the fifth kill (or half of them, if fewer), SIGSTOPs
a worker that holds a shard it has committed to, keeps it stopped until another worker has taken the shard over
(its lease expired and the token moved on), then SIGCONTs it: the zombie. After every event it checks, from the records alone
(:func:`batchlab.fleet_audit.audit`): no committed output disappeared, no put ever committed under a stale
token, and the work redone so far is within the in-flight bound (each kill may redo at most the documents the
dead worker had in flight: ``concurrency``). At the end every document must be committed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..contract import BatchConfig
from ..errors import EXIT_FAILED, EXIT_OK, KitError, UsageError
from ..faults import FaultPlan
from ..fleet import FLEET_ROLE, Fleet
from ..fleet_audit import Audit, audit
from ..leases import HELD
from ..paths import default_demo_impl, example_input
from ..runlock import RunDirLock
from ..runspec import RunSpec
from ..service import LatencyModel


@dataclass
class WorkerChaosResult:
    """Every event with the audit after it, and the verdict."""

    events: list[dict[str, Any]] = field(default_factory=list)
    final: Audit | None = None
    bound: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.final is not None and not self.final.lost

    def lines(self) -> list[str]:
        out = [f"{e['n']:>3}  {e['what']:<44} {e['audit']}" for e in self.events]
        if self.final is not None:
            out.append(f"end: {self.final.line()} (in-flight bound {self.bound}); {self.seconds:.1f} s")
        return [*out, *(f"PROBLEM: {p}" for p in self.problems), "ok" if self.ok else "FAILED"]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "final": asdict(self.final) if self.final else None,
                "bound": self.bound, "problems": self.problems, "seconds": self.seconds}


@dataclass
class ChaosTarget:
    """Where the chaos's batch lives: the spec's run directory (``store`` None) or a PostgreSQL store, and, on a
    store, how to restart its server once mid-run (``restart``: only where the tool may, e.g. the tests' pg_ctl)."""

    store: str | None = None
    folder: Path | None = None  #: a store's workers' local folders
    restart: Callable[[], None] | None = None

    def fleet(self, spec: RunSpec, workers: int, lease_s: float) -> Fleet:
        if self.store is None:
            return Fleet(spec, workers, lease_s=lease_s)
        from ..pgfleet import StoreHome

        return Fleet(spec, workers, lease_s=lease_s, home=StoreHome(self.store, spec, self.folder or Path(
            tempfile.mkdtemp(prefix=f"batchlab-chaos-{spec.batch_id}-"))))

    def audit(self, spec: RunSpec) -> Audit:
        if self.store is None:
            return audit(spec.run_dir, spec.input, spec.batch_id)
        from ..fleet_audit import audit_store

        return audit_store(self.store, spec.input, spec.batch_id)

    def locked(self, spec: RunSpec) -> contextlib.AbstractContextManager[object]:
        """A run directory's lock (a second `batchlab run` on it is refused); a store has none to take."""
        if self.store is None:
            return RunDirLock(Path(spec.run_dir), role=FLEET_ROLE).acquire(spec.lock_wait_s)
        return contextlib.nullcontext()


def _check(target: ChaosTarget, spec: RunSpec, result: WorkerChaosResult, bound: int,
           committed_before: int) -> Audit:
    found = target.audit(spec)
    result.bound = bound
    if found.committed < committed_before:
        result.problems.append(f"committed outputs went down: {committed_before} -> {found.committed}")
    if found.stale_commits:
        result.problems.append(f"stale-token commits: {found.stale_commits[:5]}")
    if found.extra_puts > bound:
        result.problems.append(f"{found.extra_puts} duplicate puts (in-flight bound {bound})")
    return found


#: Times the zombie is tried: a frozen worker's shard is not taken over within 20 leases when every other worker
#: is busy with its own shard and a rescue (kills in quick succession); it is frozen again a few events later.
ZOMBIE_TRIES = 3


def _zombie(fleet: Fleet, lease_s: float, say: Callable[[str], None]) -> tuple[str, bool] | None:
    """SIGSTOP a worker holding a shard, SIGCONT it once the shard was taken over; what happened and whether its
    shard was taken over, or None (no worker held a shard)."""
    for name in fleet.alive():
        fleet.signal(name, signal.SIGSTOP)
        held = [s for s in fleet.shard_states() if s.owner == fleet.owner(name) and s.state == HELD]
        if not held or not fleet.write_lock_free(shard=held[0].shard):  # between shards, or frozen in a transaction
            fleet.signal(name, signal.SIGCONT)
            continue
        shard, token = held[0].shard, held[0].token
        say(f"SIGSTOP {name} holding shard {shard} token {token}")
        deadline = time.monotonic() + 20 * lease_s
        while fleet.shard_states()[shard].token == token and time.monotonic() < deadline:
            fleet.step()
            time.sleep(0.05)
        taken = fleet.shard_states()[shard].token > token
        fleet.signal(name, signal.SIGCONT)
        return f"zombie {name}: shard {shard} token {token} {'taken over' if taken else 'NOT taken'}, SIGCONT", taken
    return None


def run_chaos_workers(spec: RunSpec, *, workers: int, kills: int, lease_s: float = 1.5, min_s: float = 0.3,
                      max_s: float = 2.0, seed: int = 15, on_line: Callable[[str], None] = lambda _: None,
                      timeout_s: float = 900.0, target: ChaosTarget | None = None) -> WorkerChaosResult:
    """The batch under ``kills`` random worker kills, one zombie and (a store with ``restart``) one server restart.

    The in-flight bound: each kill may redo the documents its worker had in flight (``concurrency``), and the
    restart those of every worker (each may lose its lease while the server is down, or see a commit whose answer
    was lost: :class:`batchlab.pgstore.PgConnection`).
    """
    target = target or ChaosTarget()
    rng = random.Random(seed)
    result = WorkerChaosResult(bound=spec.config.concurrency * kills)
    t0 = time.monotonic()
    zombie_at = min(kills // 2, 5)  # early: a short batch has one too
    restart_at = (kills + zombie_at + 1) // 2 if target.restart is not None else -1  # mid-run
    with target.locked(spec):
        fleet = target.fleet(spec, workers, lease_s)
        fleet.start()
        done_kills, committed, restarts, running, zombie_tries = 0, 0, 0, True, 0
        try:
            while (running := fleet.step()) and time.monotonic() - t0 < timeout_s:
                if done_kills >= kills and zombie_at < 0 and restart_at < 0:
                    time.sleep(0.1)
                    continue
                time.sleep(rng.uniform(min_s, max_s))
                alive = fleet.alive()
                if not alive or fleet.done():
                    continue
                zombie = _zombie(fleet, lease_s, on_line) if done_kills >= zombie_at >= 0 else None
                if zombie is not None:  # None: no worker held a shard yet (joining, between shards): next event
                    (what, taken), zombie_tries = zombie, zombie_tries + 1
                    zombie_at = -1 if taken or zombie_tries >= ZOMBIE_TRIES else min(done_kills + 3, kills)  # again
                elif done_kills >= restart_at >= 0 and target.restart is not None:
                    target.restart()
                    restarts, restart_at = 1, -1
                    what = "server restarted"
                elif done_kills < kills:
                    victim = rng.choice(alive)
                    fleet.signal(victim, signal.SIGKILL)
                    done_kills += 1
                    what = f"SIGKILL {victim}"
                else:  # only the zombie is left to do, and no worker holds a shard yet
                    continue
                bound = spec.config.concurrency * (done_kills + restarts * workers)
                found = _check(target, spec, result, bound, committed)
                committed = found.committed
                result.events.append({"n": len(result.events) + 1, "what": what, "audit": found.line()})
                on_line(f"{len(result.events):>3}  {what:<44} {found.line()}")
        finally:
            fleet.close()
    result.final = _check(target, spec, result, spec.config.concurrency * (done_kills + restarts * workers),
                          committed)
    result.seconds = time.monotonic() - t0
    if result.final.lost and running:  # stopped by the time limit, the workers still at it
        result.problems.append(f"the batch did not finish within {timeout_s:g} s (--timeout-s; a machine this slow "
                               f"needs more): {len(result.final.lost)} documents not committed yet: "
                               f"{result.final.lost[:5]}")
    elif result.final.lost:
        result.problems.append(f"{len(result.final.lost)} documents never committed: {result.final.lost[:5]}")
    return result


def cmd_chaos_workers(args: argparse.Namespace) -> int:
    """``batchlab chaos RUN_DIR --workers N``, or ``chaos --workers N --store URL --batch-id ID [--restart-server
    CMD] [RUN_DIR]`` (RUN_DIR then the workers' local folder) (wired from :mod:`batchlab.teach.chaos_cmd`)."""
    target = _target(args)
    folder = target.folder if target.store is not None else Path(args.run_dir)
    spec = RunSpec(impl=Path(args.impl or default_demo_impl()), input=Path(args.input or example_input()),
                   run_dir=folder or Path(tempfile.mkdtemp(prefix="batchlab-chaos-")),
                   config=BatchConfig(concurrency=args.concurrency),
                   plan=FaultPlan(seed=args.seed, transient_rate=args.fault_rate),
                   latency=LatencyModel(median_ms=args.latency_ms), batch_id=args.batch_id or "batch-001")
    say = (lambda _: None) if args.json else (lambda line: print(line, flush=True))
    result = run_chaos_workers(spec, workers=args.workers, kills=args.kills, lease_s=args.lease_s,
                               min_s=args.min_s, max_s=args.max_s, seed=args.seed, on_line=say,
                               timeout_s=args.timeout_s, target=target)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str) if args.json
          else "\n".join(result.lines()))
    return EXIT_OK if result.ok else EXIT_FAILED


def _target(args: argparse.Namespace) -> ChaosTarget:
    """``--store URL --batch-id ID [--restart-server CMD]``: the chaos on a PostgreSQL store (run_dir: its folder)."""
    store = getattr(args, "store", None)
    restart_cmd = getattr(args, "restart_server", None)
    if not store:
        if restart_cmd:
            raise UsageError("--restart-server needs --store (a run directory has no server)", code="usage_error",
                             details={"restart_server": restart_cmd}, hints=["Add --store postgresql://..."])
        if args.run_dir is None:
            raise UsageError("chaos --workers needs a run directory or --store URL --batch-id ID", code="usage_error",
                             details={}, hints=["batchlab chaos runs/chaos --workers 3",
                                                "batchlab chaos --workers 3 --store URL --batch-id ID"])
        return ChaosTarget()
    if not store.startswith(("postgresql://", "postgres://")) or not getattr(args, "batch_id", None):
        raise UsageError("--store needs a PostgreSQL URL and --batch-id", code="usage_error",
                         details={"store": store}, hints=["--store postgresql://user@host/db --batch-id chaos1"])

    command = str(restart_cmd)

    def restart() -> None:  # its output captured: stdout is the report's (``--json``)
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300, check=False)  # noqa: S602
        if done.returncode != 0:
            raise KitError(f"--restart-server exited {done.returncode}", code="restart_failed",
                           details={"command": command, "output": (done.stdout + done.stderr)[-2000:]},
                           hints=["Run the command by hand: it must restart the server and wait until it is up."])

    return ChaosTarget(store=store, folder=Path(args.run_dir) if args.run_dir else None, restart=restart if restart_cmd else None)
