"""One pass of the processor over one leased shard: the child a fleet worker starts and kills.

``python -m batchlab.shardpass RUN_DIR --shard I --of N --owner W --token T --pass P``

It runs the implementation of ``RUN_DIR/spec.json`` in this process on the documents of shard ``I/N``
(``BatchConfig.shard``: the processor keeps a checkpoint of its own per shard and skips the others'
documents), with the run's service, the shared ledger (one ``os.write`` per event on ``O_APPEND``: several
passes append to it at once, each under its own pass number) and the run's sink, every put of which is
*fenced*: the lease (batch, shard, owner, token) is checked inside the put's own SQLite transaction
(:meth:`batchlab.leases.SqliteLeaseStore.fence`). A refused put is recorded (``fence_refusals``, and a
``stopped`` event naming the stale token) and this process leaves at once with :data:`EXIT_STALE`, whatever
the processor would have done with the exception: a worker that lost its shard must not go on.

``--serve`` loads everything once and runs a pass per lease line on stdin (:func:`serve_leases`: the worker's
pass runner, kept from shard to shard). ``--prepare`` only opens the processor's checkpoint store once (so its file exists, in WAL mode, before
several passes open it at once: SQLite refuses two processes switching a new file to WAL together).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from .leases import EXIT_STALE, FencedSink, Lease, SqliteLeaseStore, StaleLease
from .ledger import Ev, Ledger
from .lifeline import hold_parent_link
from .rundir import RunDir
from .sink import SqliteSink


def _load(run_dir: Path) -> tuple[Any, Any]:
    from .runspec import read_spec
    from .worker import load_impl

    spec = read_spec(run_dir)
    return spec, load_impl(spec.impl)


def prepare(run_dir: Path) -> None:
    """Open the processor's checkpoint store once (see the module); a broken module is left to the passes."""
    try:
        spec, module = _load(run_dir)
        RunDir(run_dir).state.mkdir(exist_ok=True)
        module.CheckpointStore(RunDir(run_dir).state, spec.batch_id).close()
    except Exception:  # noqa: BLE001 - the passes report what is wrong with the module
        pass


def run(run_dir: Path, lease: Lease, pass_no: int, loaded: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """The pass: the processor over the shard's documents, every put fenced by ``lease``.

    ``loaded``: the spec and the module, already loaded by a pass runner (:func:`serve_leases`).
    """
    from .batchstream import open_checked
    from .service import SimulatedService

    spec, module = loaded or _load(run_dir)
    entry = module.process_documents_batch
    if not inspect.iscoroutinefunction(entry):
        raise TypeError("the module has no `async def process_documents_batch(...)`")
    run = RunDir(run_dir)
    ledger = Ledger(run.ledger, pass_no=pass_no)
    ledger.emit(Ev.PASS_START, t0=time.time(), batch_id=spec.batch_id, impl=str(spec.impl), crash="none", at=0,
                shard=lease.spec, owner=lease.owner, token=lease.token)
    store = SqliteLeaseStore(run.sink)
    service = SimulatedService(plan=spec.plan, latency=spec.latency, ledger=ledger, outage_switch=run.outage_switch)
    inner = SqliteSink(run.sink, ledger=ledger, pass_no=pass_no, durable=spec.durable,
                       guard=store.fence(lease, time.time))

    def refused(key: str) -> NoReturn:
        store.refuse(lease, key, now=time.time())
        ledger.emit(Ev.STOPPED, signal="stale_lease", left_in_flight=[], in_flight=0, commits=inner.commits,
                    calls=service.calls, grace_s=0.0, shard=lease.spec, owner=lease.owner, token=lease.token,
                    refused_key=key)
        print(f"shardpass {os.getpid()}: {StaleLease(lease, key)}; leaving", flush=True)
        os._exit(EXIT_STALE)

    sink = FencedSink(inner, refused)
    try:
        report = asyncio.run(entry(open_checked(spec.input, None), batch_id=spec.batch_id, service=service,
                                   sink=sink, state_dir=run.state,
                                   config=dataclasses.replace(spec.config, shard=lease.spec)))
    finally:
        inner.close()
        store.close()
    report_dict = dict(report.to_dict()) if hasattr(report, "to_dict") else dict(report)
    ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=inner.commits)
    ledger.close()
    return report_dict


def serve_leases(run_dir: Path) -> int:
    """A pass runner: load everything once, then run one pass per lease line on stdin; EOF: leave.

    The worker starts it before it claims, so a claimed shard starts at once instead of after an interpreter's
    start and the imports (a second or more on a loaded 2-core machine), and keeps it for the next shard. Each
    lease line (JSON) names its pass (``pass``); stdout and stderr go to its ``passN.*`` files, and ``done`` on the
    original stdout tells the worker the pass ended well. A pass that raises ends the process (the worker sees
    end-of-file and its exit code); a refused put ends it with :data:`EXIT_STALE`.
    """
    import json

    ctl = os.fdopen(os.dup(1), "w")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # nothing but ``done`` reaches the worker's pipe
    os.close(quiet)
    try:
        loaded: tuple[Any, Any] | None = _load(run_dir)
    except BaseException:  # noqa: BLE001 - reported by the first pass, which loads again and raises
        loaded = None
    for line in sys.stdin:
        if not line.strip():
            break
        got = json.loads(line)
        run_files = RunDir(run_dir)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, path in ((1, run_files.stdout(got["pass"])), (2, run_files.stderr(got["pass"]))):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        lease = Lease(got["batch_id"], got["shard"], got["of"], got["owner"], got["token"], 0.0)
        run(run_dir, lease, got["pass"], loaded)
        sys.stdout.flush()
        sys.stderr.flush()
        ctl.write("done\n")
        ctl.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    hold_parent_link()  # first: this pass dies with the worker that holds its lease
    parser = argparse.ArgumentParser(prog="python -m batchlab.shardpass")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--serve", action="store_true", help="load, then run a pass per lease line on stdin")
    parser.add_argument("--batch-id", default="")
    parser.add_argument("--shard", type=int, default=0)
    parser.add_argument("--of", type=int, default=1)
    parser.add_argument("--owner", default="")
    parser.add_argument("--token", type=int, default=0)
    parser.add_argument("--pass", dest="pass_no", type=int, default=1)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.run_dir)
        return 0
    if args.serve:
        return serve_leases(args.run_dir)
    lease = Lease(args.batch_id, args.shard, args.of, args.owner, args.token, 0.0)
    run(args.run_dir, lease, args.pass_no)
    return 0


if __name__ == "__main__":
    sys.exit(main())
