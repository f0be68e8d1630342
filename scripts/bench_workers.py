"""Benchmark: a batch shared by 1, 2, 4 (8) lease-holding workers on a latency-bound service (figures, not pass/fail).

    nice -n 19 .venv/bin/python scripts/bench_workers.py [--docs 400] [--workers 1,2,4] [--reps 3]

For each worker count: the fleet's wall time from its first pass's start to its last pass's end, throughput
(unique documents per second) and its ratio to one worker's, the time the last pass ran alone (the long tail:
shards are two per worker, so the last one is half a worker's share), and the load average. Then the
takeover: one worker SIGKILLed mid-shard, and the time from the kill to another worker's claim of its shard
(in seconds and in lease lengths; the target is within 2). Medians of ``--reps`` runs: the machine is noisy.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.fleet import Fleet, run_fleet
from batchlab.fleet_figures import alone_tail
from batchlab.leases import HELD, SqliteLeaseStore
from batchlab.ledger import Ev, iter_events
from batchlab.paths import solution_module
from batchlab.rundir import RunDir
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel


def _spec(work: Path, input_path: Path, name: str, latency_ms: float, concurrency: int) -> RunSpec:
    return RunSpec(impl=solution_module(), input=input_path, run_dir=work / name,
                   config=BatchConfig(concurrency=concurrency), latency=LatencyModel(median_ms=latency_ms))


def one_run(spec: RunSpec, workers: int, lease_s: float, docs: int, shards: int = 0) -> tuple[float, float]:
    """(documents per second over the passes' span, the lone tail in seconds)."""
    result = run_fleet(spec, workers=workers, lease_s=lease_s, shards=shards, timeout_s=900)
    assert result.complete, result.lines()
    ledger = RunDir(Path(spec.run_dir)).ledger
    times = [float(e["t"]) for e in iter_events(ledger) if e.get("ev") in (Ev.PASS_START, Ev.PASS_END)]
    return docs / (max(times) - min(times)), alone_tail(iter_events(ledger))


def takeover(spec: RunSpec, lease_s: float, respawn: bool) -> float:
    """Seconds from SIGKILL of a worker mid-shard to another worker's claim of that shard."""
    fleet = Fleet(spec, 2, lease_s=lease_s, respawn=respawn)
    fleet.start()
    try:
        while True:
            held = [s for s in fleet.shard_states() if s.owner == "w1" and s.state == HELD]
            if held:
                fleet.signal("w1", signal.SIGKILL)
                killed_at = time.time()
                break
            time.sleep(0.02)
        store = SqliteLeaseStore(fleet.run.sink)
        try:
            while True:
                row = store._conn.execute("SELECT t FROM lease_claims WHERE shard = ? AND token > ?",
                                          (held[0].shard, held[0].token)).fetchone()
                if row:
                    return float(row[0]) - killed_at
                fleet.step()
                time.sleep(0.02)
        finally:
            store.close()
    finally:
        fleet.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease-s", type=float, default=2.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        input_path = write_input(work / "input.json", make_documents(args.docs, seed=15, max_bytes=2000))
        base = None
        print(f"{args.docs} docs, service median {args.latency_ms} ms, concurrency {args.concurrency} per worker, "
              f"lease {args.lease_s} s, load {os.getloadavg()[0]:.2f}")
        print("workers  docs/s (median)  x one worker  lone tail s  load")
        for n in counts:
            runs = [one_run(_spec(work, input_path, f"w{n}-{r}", args.latency_ms, args.concurrency), n, args.lease_s,
                            args.docs) for r in range(args.reps)]
            rate = statistics.median(r[0] for r in runs)
            base = base or rate
            print(f"{n:>7}  {rate:>15.1f}  {rate / base:>12.2f}  {statistics.median(r[1] for r in runs):>11.2f}  "
                  f"{os.getloadavg()[0]:.2f}", flush=True)
        top = max(counts)
        for per in (1, 4):
            runs = [one_run(_spec(work, input_path, f"tail-{per}-{r}", args.latency_ms, args.concurrency), top,
                            args.lease_s, args.docs, shards=per * top) for r in range(args.reps)]
            print(f"{top} workers, {per} shard(s) each: {statistics.median(r[0] for r in runs):.1f} docs/s, "
                  f"last pass alone {statistics.median(r[1] for r in runs):.2f} s", flush=True)
        for respawn in (True, False):
            takes = [takeover(_spec(work, input_path, f"take-{respawn}-{r}", args.latency_ms, args.concurrency),
                              args.lease_s, respawn) for r in range(args.reps)]
            med = statistics.median(takes)
            print(f"takeover after SIGKILL ({'replaced' if respawn else 'by the other worker'}): median {med:.2f} s"
                  f" = {med / args.lease_s:.2f} lease lengths (runs: {', '.join(f'{t:.2f}' for t in takes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
