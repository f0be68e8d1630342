"""Scaling of the PostgreSQL fleet (a benchmark, not a test): throughput of 1, 2, 4 ... workers on one batch.

For each worker count, a fresh batch of ``--docs`` documents in ``4 x workers`` shards is published in a
throwaway local server (started as the tests start it, or ``--store URL``) and run by
:func:`batchlab.pgworker.run_fleet` (the run-directory fleet's workers and long-lived pass runners, on the
store) with the reference processor on a latency-bound simulated service
(``--median-ms``, default 20, the reference's concurrency 8 per worker). Wall time from publish to the last
worker's exit (worker and pass start-up included), documents per second, the ratio to one worker, and the
service's limit (workers x concurrency / mean modelled latency), the load average. One JSON line per worker count; then
``--takeovers`` times, one of two workers SIGKILLed after its first claim and the seconds until the other
claimed its shard (median, max, in lease lengths).

    python scripts/bench_pgworkers.py                      # 1, 2, 4 workers, 1000 documents
    python scripts/bench_pgworkers.py --workers 1 4 8 --docs 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.pgbatch import publish_batch
from batchlab.pgmetrics import metrics_for_store
from batchlab.pgstore import PgConnection
from batchlab.pgworker import run_fleet
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from bench_pgstore import server


def takeover(url: str, source: Path, folder: Path, *, lease_s: float, latency: LatencyModel) -> dict[str, float]:
    """SIGKILL one of two workers (and its pass) just after its first claim: seconds until the other takes it over."""
    batch = f"takeover-{uuid.uuid4().hex[:6]}"
    publish_batch(PgConnection(url), RunSpec(impl=solution_module(), input=source, run_dir=folder / "unused",
                                             batch_id=batch, latency=latency), shards=8)

    def start(owner: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "batchlab.pgworker", url, "--batch-id", batch, "--impl",
                                 str(solution_module()), "--owner", owner, "--lease-s", str(lease_s),
                                 "--folder", str(folder / owner)], stdout=subprocess.PIPE, text=True)

    victim = start("victim")
    assert victim.stdout is not None and "claimed" in victim.stdout.readline()
    other = start("other")
    killed_at = time.time()
    victim.kill()  # its pass dies with it (the parent link)
    victim.wait()
    other.communicate(timeout=900)
    row = PgConnection(url).transact(lambda c: c.execute(
        "SELECT t FROM lease_claims WHERE batch_id = %s AND took_over_from = 'victim'", (batch,)).fetchone())
    assert row is not None, "no takeover"
    return {"lease_s": lease_s, "takeover_s": round(float(row[0]) - killed_at, 2),
            "takeover_in_leases": round((float(row[0]) - killed_at) / lease_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--median-ms", type=float, default=20.0)
    parser.add_argument("--lease-s", type=float, default=10.0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--takeovers", type=int, default=3, help="kill-and-takeover measurements (0: none)")
    args = parser.parse_args()
    latency = LatencyModel(median_ms=args.median_ms)
    mean_s = args.median_ms / 1000 * math.exp(latency.sigma ** 2 / 2)  # a log-normal's mean
    concurrency = BatchConfig().concurrency
    base: float | None = None
    with server(args.store) as url, tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp) / "in.json", make_documents(args.docs, seed=1, min_bytes=200, max_bytes=800))
        for n in args.workers:
            batch = f"scale-{n}-{uuid.uuid4().hex[:6]}"
            spec = RunSpec(impl=solution_module(), input=source, run_dir=Path(tmp) / "unused", batch_id=batch,
                           latency=latency)
            t0 = time.perf_counter()
            exits = run_fleet(url, spec, workers=n, shards=4 * n, folder=Path(tmp) / batch, lease_s=args.lease_s)
            wall = time.perf_counter() - t0
            m = metrics_for_store(url, batch)
            rate = m.completed / wall
            base = base or rate
            print(json.dumps({"workers": n, "docs": args.docs, "wall_s": round(wall, 2), "docs_per_s": round(rate, 1),
                              "ratio_to_one": round(rate / base, 2), "completion_rate": m.completion_rate,
                              "duplicate_rate": m.duplicate_rate, "exits": sorted(map(str, exits.values())),
                              "load": round(os.getloadavg()[0], 2),
                              "service_limit_calls_per_s": round(n * concurrency / mean_s, 1)}), flush=True)
        times = [takeover(url, source, Path(tmp), lease_s=args.lease_s, latency=latency)["takeover_s"]
                 for _ in range(args.takeovers)]
        if times:
            med = statistics.median(times)
            print(json.dumps({"takeovers": len(times), "lease_s": args.lease_s, "takeover_s_median": round(med, 2),
                              "takeover_s_max": max(times), "takeover_in_leases_median": round(med / args.lease_s, 2)}))


if __name__ == "__main__":
    main()
