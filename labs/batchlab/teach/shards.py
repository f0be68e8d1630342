"""Shard-level progress, for real: worker processes share one batch, one sink and one state folder, one shard each.

The lesson's third kind of checkpoint (知识点 1: global offset, object marker,
shard-level): a batch is split into ``n`` shards by a stable hash of each
document's idempotency key (``BatchConfig.shard = "i/n"``, the reference's
``in_shard``), and each shard's worker keeps its own checkpoint
(``CheckpointStore(state_dir, batch_id, shard="i/n")``). :func:`run_shards`
starts one worker process per shard at once, all writing the same
:class:`~batchlab.sink.SqliteSink`; one of them is SIGKILLed right after its
K-th commit (the sink's own crash point, before the processor can update its
checkpoint) and is then resumed alone. The figures (:class:`ShardRun`) come from
the sink's ``puts`` table and each worker's ledger, never from the processor:
commits per shard, keys committed twice, keys never committed.

This is the teaching step before several workers *claim* shards (leases, fencing
tokens): here each worker is told its shard, and nothing stops two workers from
being told the same one. The child is ``python -m batchlab.teach.shards ...``
(notebook 01 and ``tests/batchlab/teach/test_shards.py`` run it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batchstream import open_batch
from ..childproc import child_popen_kwargs, kill_group
from ..contract import BatchConfig
from ..faults import CRASH_AFTER_COMMIT, CrashPlan, FaultPlan
from ..inventory import iter_entries
from ..ledger import Ev, Ledger, read_events
from ..rundir import RunDir
from ..service import LatencyModel, SimulatedService
from ..sink import SqliteSink, connect, read_outputs, read_puts


@dataclass(frozen=True)
class ShardPass:
    """One worker process's pass over its shard: how it ended and what it committed."""

    shard: str
    pass_no: int
    returncode: int
    commits: int
    report: dict[str, Any] | None
    seconds: float
    stderr: str = ""

    @property
    def killed(self) -> bool:
        return self.returncode == -9


@dataclass
class ShardRun:
    """Every pass of every shard, and the sink's account of the whole batch."""

    passes: list[ShardPass]
    unique: int
    committed: int
    #: documents (by the kit's identity) committed more than once, with how many times
    duplicates: dict[str, int] = field(default_factory=dict)
    #: documents never committed
    lost: list[str] = field(default_factory=list)

    def commits_by_shard(self) -> dict[str, int]:
        """Sink commits per shard over all its passes (from each worker's ledger)."""
        out: Counter[str] = Counter()
        for p in self.passes:
            out[p.shard] += p.commits
        return dict(out)

    def lines(self) -> list[str]:
        rows = [f"{p.shard:>5}  pass {p.pass_no}  {'SIGKILL' if p.killed else f'exit {p.returncode}'}  "
                f"{p.commits:>4} commits  {p.seconds:5.2f} s" for p in self.passes]
        return [*rows, f"batch: {self.committed} of {self.unique} documents committed, "
                       f"{len(self.duplicates)} committed twice, {len(self.lost)} lost"]


def _ledger_path(work: Path, shard: str, pass_no: int) -> Path:
    return work / f"ledger-shard{shard.replace('/', 'of')}-pass{pass_no}.jsonl"


def worker_command(*, impl: Path, input_path: Path, work: Path, shard: str, pass_no: int, kill_after: int = 0,
                   latency_ms: float = 2.0, concurrency: int = 4, seed: int = 15) -> list[str]:
    """The command line of one shard's worker process."""
    return [sys.executable, "-m", "batchlab.teach.shards", "--impl", str(impl), "--input", str(input_path),
            "--work", str(work), "--shard", shard, "--pass", str(pass_no), "--kill-after", str(kill_after),
            "--latency-ms", str(latency_ms), "--concurrency", str(concurrency), "--seed", str(seed)]


def _finish(proc: subprocess.Popen[str], *, shard: str, pass_no: int, work: Path, started: float,
            timeout_s: float) -> ShardPass:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
    events = read_events(_ledger_path(work, shard, pass_no)) if _ledger_path(work, shard, pass_no).exists() else []
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return ShardPass(shard=shard, pass_no=pass_no, returncode=proc.returncode,
                     commits=sum(1 for e in events if e["ev"] == Ev.SINK_PUT),
                     report=json.loads(lines[-1]) if lines else None, seconds=time.monotonic() - started,
                     stderr=err[-2000:])


def run_shards(*, impl: Path, input_path: Path, work: Path, shards: int = 2, kill_shard: int = 0,
               kill_after: int = 10, latency_ms: float = 2.0, concurrency: int = 4,
               timeout_s: float = 60.0) -> ShardRun:
    """All ``shards`` workers at once (shard ``kill_shard`` SIGKILLed after ``kill_after`` commits), then its resume."""
    work.mkdir(parents=True, exist_ok=True)
    # The shared sink is made (WAL mode and schema) before the workers start: two processes switching a new database
    # to WAL at the same instant can fail at once with "database is locked" (no busy wait for that lock).
    connect(RunDir(work).sink).close()
    common: dict[str, Any] = {"impl": impl, "input_path": input_path, "work": work, "latency_ms": latency_ms,
                              "concurrency": concurrency}
    # The same for the shards' shared checkpoint file: one child opens the processor's store once (and so makes
    # the file) before the shard workers start together.
    subprocess.run([*worker_command(shard="0/1", pass_no=1, **common), "--prepare"], capture_output=True,
                   timeout=timeout_s, **child_popen_kwargs())
    started = time.monotonic()
    procs = {}
    for i in range(shards):
        shard = f"{i}/{shards}"
        cmd = worker_command(shard=shard, pass_no=1, kill_after=kill_after if i == kill_shard else 0, **common)
        procs[shard] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        **child_popen_kwargs())
    passes = [_finish(p, shard=s, pass_no=1, work=work, started=started, timeout_s=timeout_s)
              for s, p in procs.items()]
    for first in list(passes):
        if first.killed:  # resume the killed shard alone: the others are finished
            again = time.monotonic()
            proc = subprocess.Popen(worker_command(shard=first.shard, pass_no=2, **common), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, **child_popen_kwargs())
            passes.append(_finish(proc, shard=first.shard, pass_no=2, work=work, started=again, timeout_s=timeout_s))
    return account(passes, input_path, RunDir(work).sink)


def account(passes: list[ShardPass], input_path: Path, sink_path: Path) -> ShardRun:
    """The batch as the sink has it: documents committed, committed twice, never committed."""
    names: dict[str, str] = {}  # ident -> id (the last one written): the account names every lost document
    for e in iter_entries(open_batch(input_path)):  # streamed: the input itself is not kept
        if e.ident is not None and e.document is not None:
            names[e.ident] = e.document.id
    writes = Counter(p["ident"] for p in read_puts(sink_path))
    committed = {rec.ident for rec in read_outputs(sink_path)}
    return ShardRun(passes=passes, unique=len(names), committed=len(committed & names.keys()),
                    duplicates={names.get(i, i): n for i, n in writes.items() if n > 1},
                    lost=sorted(names[i] for i in names.keys() - committed))


async def _work(args: argparse.Namespace) -> dict[str, Any]:
    from ..worker import load_impl

    module = load_impl(args.impl)
    batch = open_batch(args.input)  # a stream, validated first: the processor pulls it through its window
    work = Path(args.work)
    ledger = Ledger(_ledger_path(work, args.shard, args.pass_no), pass_no=args.pass_no)
    crash = CrashPlan(kind=CRASH_AFTER_COMMIT, at=args.kill_after) if args.kill_after else CrashPlan()
    service = SimulatedService(plan=FaultPlan(seed=args.seed), latency=LatencyModel(median_ms=args.latency_ms),
                               ledger=ledger)
    sink = SqliteSink(RunDir(work).sink, ledger=ledger, pass_no=args.pass_no, crash=crash)
    try:
        report = await module.process_documents_batch(
            batch, batch_id=batch.header.batch_id or "batch", service=service, sink=sink,
            state_dir=RunDir(work).state, config=BatchConfig(concurrency=args.concurrency, shard=args.shard))
    finally:
        sink.close()
    return dict(report.to_dict()) if hasattr(report, "to_dict") else dict(report)


def _prepare(args: argparse.Namespace) -> None:
    """Open the processor's checkpoint store once, so that its file exists before several workers open it at once.

    SQLite answers "database is locked" at once, without waiting, to a process that switches a new file to WAL
    while another does the same; an unfinished store (a skeleton) is simply left to the workers to report.
    """
    from ..worker import load_impl

    try:
        module = load_impl(args.impl)
        store = module.CheckpointStore(RunDir(Path(args.work)).state, open_batch(args.input).header.batch_id or "batch")
        store.close()
    except Exception:  # noqa: BLE001 - the workers report what is wrong with the module
        pass


def main(argv: list[str] | None = None) -> int:
    """One shard's worker: process the shard's documents of the batch, print the report as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m batchlab.teach.shards")
    for name in ("--impl", "--input", "--work", "--shard"):
        parser.add_argument(name, required=True)
    parser.add_argument("--pass", dest="pass_no", type=int, default=1)
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--prepare", action="store_true", help="only make the checkpoint file, then exit")
    args = parser.parse_args(argv)
    if args.prepare:
        _prepare(args)
        return 0
    print(json.dumps(asyncio.run(_work(args)), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
