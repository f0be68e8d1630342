"""Load check of ``batchlab serve`` (a benchmark, not a test): many batches at once, many WebSocket clients.

Starts a real server on a free loopback port over a temporary data folder,
submits ``--batches`` batches of ``--docs`` documents at once, connects
``--clients`` WebSocket clients (spread over the batches, each reading until
its batch's ``final`` message), and meanwhile times ``GET /batches/{id}``
(p50 / p95). At the end: whether every batch completed with its thresholds
met, and the figures as one JSON line.

    python scripts/bench_serve.py                   # 20 x 120 documents, 50 clients
    python scripts/bench_serve.py --batches 5 --clients 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets
from batchlab.examples import make_documents


def start_server(data: Path, max_running: int) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen([sys.executable, "-m", "batchlab", "serve", "--port", "0", "--data", str(data),
                             "--max-running", str(max_running)], stdout=subprocess.PIPE,
                            stderr=(data.parent / "serve.log").open("wb"), start_new_session=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().decode() if ready else ""
    if "http://" not in line:
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split("http://", 1)[1].split("/", 1)[0]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def watch(host: str, batch_id: str, counts: dict[str, int]) -> None:
    async with websockets.connect(f"ws://{host}/batches/{batch_id}/events", max_size=None, open_timeout=60) as ws:
        async for raw in ws:
            msg = json.loads(raw)
            counts[msg["type"]] = counts.get(msg["type"], 0) + 1
            if msg["type"] == "final":
                return


async def run(args: argparse.Namespace, host: str) -> dict[str, object]:
    # The GETs are timed on a new connection each (as curl does) and, apart, on one kept-alive connection (as a
    # browser does), reported as keepalive_*: the server once stalled those ~40 ms each (Nagle was on; see
    # batchlab.serve.server.listening_socket).
    fresh = httpx.AsyncClient(base_url=f"http://{host}", timeout=60, limits=httpx.Limits(max_keepalive_connections=0))
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=60) as http, fresh:
        bodies = [{"batch_id": f"load-{i:02d}", "documents": make_documents(
            args.docs, seed=100 + i, min_bytes=200, max_bytes=2000, duplicates=0, invalid=0, empty=0)}
            for i in range(args.batches)]
        t0 = time.monotonic()
        answers = await asyncio.gather(*(http.post("/batches", json=b, params={"fault_rate": args.fault_rate})
                                         for b in bodies))
        submit_s = time.monotonic() - t0
        ids = [a.json()["id"] for a in answers]
        assert all(a.status_code == 201 for a in answers), [a.text[:200] for a in answers if a.status_code != 201]
        counts: dict[str, int] = {}
        clients = [asyncio.create_task(watch(host, ids[i % len(ids)], counts)) for i in range(args.clients)]
        latencies: list[float] = []
        kept: list[float] = []
        states: dict[str, str] = {}
        while True:
            for bid in ids:
                t = time.perf_counter()
                r = await fresh.get(f"/batches/{bid}")
                latencies.append(time.perf_counter() - t)
                states[bid] = r.json()["state"]
                t = time.perf_counter()
                await http.get(f"/batches/{bid}")
                kept.append(time.perf_counter() - t)
            if all(s in ("completed", "failed") for s in states.values()):
                break
            if time.monotonic() - t0 > args.timeout:
                raise SystemExit(f"gave up after {args.timeout} s: {states}")
            await asyncio.sleep(0.05)
        wall = time.monotonic() - t0
        await asyncio.wait_for(asyncio.gather(*clients), 120)
        details = [(await http.get(f"/batches/{bid}")).json() for bid in ids]
    met = [bool(d["metrics"] and d["metrics"].get("meets_thresholds")) for d in details]
    return {"batches": args.batches, "docs_per_batch": args.docs, "ws_clients": args.clients,
            "max_running": args.max_running, "submit_s": round(submit_s, 2), "wall_s": round(wall, 1),
            "get_requests": len(latencies), "get_p50_ms": round(1000 * statistics.median(latencies), 1),
            "get_p95_ms": round(1000 * pct(latencies, 0.95), 1), "get_max_ms": round(1000 * max(latencies), 1),
            "keepalive_get_p50_ms": round(1000 * statistics.median(kept), 1),
            "keepalive_get_p95_ms": round(1000 * pct(kept, 0.95), 1),
            "completed": sum(d["state"] == "completed" for d in details), "thresholds_met": sum(met),
            "ws_messages": counts, "machine": f"{platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--docs", type=int, default=120)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--max-running", type=int, default=4, help="the server's --max-running (its default: 4)")
    p.add_argument("--fault-rate", type=float, default=0.03)
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="batchlab-bench-serve-"))
    proc, host = start_server(work / "service", args.max_running)
    try:
        result = asyncio.run(run(args, host))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the server and any worker left
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    ok = result["thresholds_met"] == args.batches and result["get_p95_ms"] < 50
    print(f"{'OK' if ok else 'NOT MET'}: {result['thresholds_met']}/{args.batches} batches met their thresholds; "
          f"GET /batches/{{id}} p50 {result['get_p50_ms']} ms, p95 {result['get_p95_ms']} ms (target < 50 ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
