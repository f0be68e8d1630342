"""Scaling of the PostgreSQL fleet (a benchmark, not a test): throughput of 1, 2, 4 ... workers on one batch.

For each worker count (``--reps`` times, medians), a fresh batch of ``--docs`` documents in
``fleet.default_shards`` shards (as the SQLite bench) is published in a
throwaway local server (started as the tests start it, or ``--store URL``) and run by
:func:`batchlab.pgfleet.run_fleet` (the run-directory fleet's workers and long-lived pass runners, on the
store) with the reference processor on a latency-bound simulated service
(``--median-ms``, default 20, the reference's concurrency 8 per worker). Wall time from publish to the last
worker's exit (worker and pass start-up included) and the passes' span (first pass start to last pass end,
the SQLite bench's measure), documents per second, the ratio to one worker (over the span), and the
service's limit (workers x concurrency / mean modelled latency), the load average, and per run where the span went
(each worker's lane: its first pass's start, its last pass's end, the time between its passes; and the time from
a pass's start to its first service call, min/median/max). One JSON line per worker count; then
``--takeovers`` times, one of two workers SIGKILLed after its first claim and the seconds until the other
claimed its shard (median, max, in lease lengths).

    python scripts/bench_pgworkers.py                      # 1, 2, 4 workers, 1000 documents (bench_workers.py's kind)
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
from typing import Any

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.fleet_figures import default_shards
from batchlab.ledger import Ev
from batchlab.paths import solution_module
from batchlab.pgbatch import publish_batch
from batchlab.pgfleet import run_fleet
from batchlab.pgmetrics import metrics_for_store
from batchlab.pgstore import PgConnection, iter_events
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


def one_run(url: str, source: Path, tmp: Path, n: int, args: argparse.Namespace,
            latency: LatencyModel) -> dict[str, Any]:
    """One batch run by ``n`` workers: documents/s over the wall (publish to the last exit) and over the passes' span
    (the first pass's start to the last pass's end, from the store's ledger: the SQLite bench's measure)."""
    batch = f"scale-{n}-{uuid.uuid4().hex[:6]}"
    spec = RunSpec(impl=solution_module(), input=source, run_dir=tmp / "unused", batch_id=batch, latency=latency)
    shards = args.shards or default_shards(n, args.docs, BatchConfig().concurrency)
    t0 = time.perf_counter()
    exits = run_fleet(url, spec, workers=n, shards=shards, folder=tmp / batch, lease_s=args.lease_s)
    wall = time.perf_counter() - t0
    m = metrics_for_store(url, batch)
    db = PgConnection(url)
    passes, first_call = [], {}
    for e in iter_events(db, batch):
        if e.get("ev") in (Ev.PASS_START, Ev.PASS_END):
            passes.append(e)
        elif e.get("ev") == Ev.CALL_START:
            first_call.setdefault(int(e["pass"]), float(e["t"]))
    db.close()
    starts = {int(e["pass"]): float(e["t"]) for e in passes if e["ev"] == Ev.PASS_START}
    setup = sorted(first_call[p] - t for p, t in starts.items() if p in first_call)
    times = [float(e["t"]) for e in passes]
    assert m.completion_rate == 1.0 and m.duplicate_rate == 0.0, (m.completion_rate, m.duplicate_rate, exits)
    return {"shards": shards, "wall_s": round(wall, 2), "docs_per_s": round(m.completed / wall, 1),
            "span_docs_per_s": round(m.completed / (max(times) - min(times)), 1),
            "pass_to_first_call_ms": [round(1000 * setup[0]), round(1000 * statistics.median(setup)), round(1000 * setup[-1])],
            **lanes(passes)}


def lanes(passes: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a run's span went, per worker (its passes' process): when its first pass started and its last ended,
    seconds from the span's start, and the time between its passes (``idle_s``: claims and pass set-up)."""
    t0 = min(float(e["t"]) for e in passes)
    by_pid: dict[int, list[tuple[float, str]]] = {}
    for e in passes:
        by_pid.setdefault(int(e["pid"]), []).append((float(e["t"]) - t0, str(e["ev"])))
    out = []
    for marks in by_pid.values():
        marks.sort()
        busy = sum(b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False) if a[1] == Ev.PASS_START)
        out.append({"first": round(marks[0][0], 2), "last": round(marks[-1][0], 2),
                    "idle_s": round(marks[-1][0] - marks[0][0] - busy, 3)})
    return {"lanes": sorted(out, key=lambda lane: lane["first"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--median-ms", type=float, default=20.0)
    parser.add_argument("--lease-s", type=float, default=10.0)
    parser.add_argument("--store", default=None)
    parser.add_argument("--reps", type=int, default=3, help="runs per worker count (medians are printed)")
    parser.add_argument("--shards", type=int, default=0, help="shards per batch (default: fleet.default_shards)")
    parser.add_argument("--takeovers", type=int, default=3, help="kill-and-takeover measurements (0: none)")
    args = parser.parse_args()
    latency = LatencyModel(median_ms=args.median_ms)
    mean_s = args.median_ms / 1000 * math.exp(latency.sigma ** 2 / 2)  # a log-normal's mean
    concurrency = BatchConfig().concurrency
    base: float | None = None
    with server(args.store) as url, tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp) / "in.json", make_documents(args.docs, seed=15, max_bytes=2000))
        for n in args.workers:
            runs = [one_run(url, source, Path(tmp), n, args, latency) for _ in range(args.reps)]
            span_rate = statistics.median(r["span_docs_per_s"] for r in runs)
            wall_rate = statistics.median(r["docs_per_s"] for r in runs)
            base = base or span_rate
            print(json.dumps({"workers": n, "docs": args.docs, "shards": runs[0]["shards"], "reps": args.reps,
                              "span_docs_per_s": round(span_rate, 1), "ratio_to_one": round(span_rate / base, 2),
                              "wall_docs_per_s": round(wall_rate, 1), "load": round(os.getloadavg()[0], 2),
                              "runs": runs, "service_limit_calls_per_s": round(n * concurrency / mean_s, 1)}),
                  flush=True)
        times = [takeover(url, source, Path(tmp), lease_s=args.lease_s, latency=latency)["takeover_s"]
                 for _ in range(args.takeovers)]
        if times:
            med = statistics.median(times)
            print(json.dumps({"takeovers": len(times), "lease_s": args.lease_s, "takeover_s_median": round(med, 2),
                              "takeover_s_max": max(times), "takeover_in_leases_median": round(med / args.lease_s, 2)}))


if __name__ == "__main__":
    main()
