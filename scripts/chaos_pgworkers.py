"""Chaos across workers on PostgreSQL (a demonstration with figures, not a test): a throwaway local server, a
fleet of ``--workers`` on a batch in it, ``--kills`` random SIGKILLs of workers, one zombie and one restart of the
server in the middle, audited after every event (:func:`batchlab.teach.chaos_workers.run_chaos_workers`).

    nice -n 19 .venv/bin/python scripts/chaos_pgworkers.py --docs 6000 --workers 3 --kills 200

``--store URL`` uses a running server instead (then no restart: the script cannot restart a server it does not own).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.teach.chaos_workers import ChaosTarget, run_chaos_workers
from batchlab.teach.pglocal import pg_server


@contextlib.contextmanager
def server(url: str | None) -> Iterator[tuple[str, Callable[[], None] | None]]:
    """The URL and a restart of a throwaway local server (`batchlab.teach.pglocal`), or ``url`` and no restart."""
    if url:
        yield url, None
        return
    with pg_server() as pg:
        yield pg.url, pg.restart


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--min-s", type=float, default=0.1)
    parser.add_argument("--max-s", type=float, default=0.4)
    parser.add_argument("--latency-ms", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--lease-s", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--store", default=None)
    args = parser.parse_args()
    with server(args.store) as (url, restart), tempfile.TemporaryDirectory() as tmp:
        source = write_input(Path(tmp) / "in.json", make_documents(args.docs, seed=args.seed, max_bytes=2000))
        spec = RunSpec(impl=solution_module(), input=source, run_dir=Path(tmp) / "local", batch_id="chaos",
                       config=BatchConfig(concurrency=args.concurrency),
                       latency=LatencyModel(median_ms=args.latency_ms))
        print(f"load {os.getloadavg()[0]:.2f}", flush=True)
        result = run_chaos_workers(spec, workers=args.workers, kills=args.kills, lease_s=args.lease_s,
                                   min_s=args.min_s, max_s=args.max_s, seed=args.seed,
                                   on_line=lambda line: print(line, flush=True),
                                   target=ChaosTarget(store=url, folder=Path(tmp) / "local", restart=restart))
        print("\n".join(result.lines()[-3:]))
        print(f"load {os.getloadavg()[0]:.2f}", flush=True)
        return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
