"""The ``batchlab chaos`` verb: its options and which chaos runs them (one ``batchlab run``, or a fleet).

Apart from :mod:`.chaos` (the kill loop and its checks) so that the loop reads as a function a test or a
notebook calls with keyword arguments, and the command line stays a thin layer over it: the options
take the lesson's defaults (:data:`batchlab.defaults.LESSON`), ``--workers N`` hands over to
:mod:`.chaos_workers`, and the result prints as lines or one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..defaults import LESSON
from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from .chaos import run_chaos


def cmd_chaos(args: argparse.Namespace) -> int:
    quiet = args.json

    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    if args.kills < 0:
        raise UsageError("--kills must be >= 0", code="usage_error")
    if getattr(args, "workers", 1) > 1:  # a fleet sharing the batch by shard leases: its workers are killed, not `batchlab run`
        from .chaos_workers import cmd_chaos_workers

        return cmd_chaos_workers(args)
    if args.run_dir is None or getattr(args, "store", None):
        raise UsageError("chaos needs a run directory (--store only with --workers N)", code="usage_error",
                         details={}, hints=["batchlab chaos runs/chaos", "batchlab chaos --workers 3 --store URL "
                                                                          "--batch-id ID"])
    extra = ["--seed", str(args.seed), "--fault-rate", str(args.fault_rate), "--concurrency", str(args.concurrency),
             "--latency-ms", str(args.latency_ms)]
    result = run_chaos(run_dir=args.run_dir, input_path=args.input, kills=args.kills, min_s=args.min_s,
                       max_s=args.max_s, seed=args.seed, impl=args.impl, extra_args=extra, on_line=say)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        print("\n".join(result.lines()))
    return EXIT_OK if result.ok else EXIT_FAILED


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("chaos", help="run a batch under N random SIGKILLs of `batchlab run` and its worker; "
                                            "integrity, duplicates and lost documents after each")
    p.add_argument("run_dir", type=Path, nargs="?", default=None,
                   help="the run directory (resumed if it exists); with --store, the workers' local folder")
    p.add_argument("--input", type=Path, default=None,
                   help="batch file (default: the run directory's own, else examples/input_example.json)")
    p.add_argument("--kills", type=int, default=20, help="how many SIGKILLs (default 20)")
    p.add_argument("--min-s", type=float, default=0.05, help="shortest time from a pass at work to its kill")
    p.add_argument("--max-s", type=float, default=1.5, help="longest time from a pass at work to its kill")
    p.add_argument("--seed", type=int, default=LESSON.seed, help="seed of the kill times and of the fault plan")
    p.add_argument("--fault-rate", type=float, default=LESSON.fault_rate)
    p.add_argument("--concurrency", type=int, default=LESSON.concurrency)
    p.add_argument("--latency-ms", type=float, default=LESSON.latency_ms)
    p.add_argument("--impl", type=Path, default=None, help="implementation file (default: as `batchlab run`)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--workers", type=int, default=1,
                   help="N > 1: a fleet of N lease-holding workers; SIGKILL random workers and SIGSTOP one past its "
                        "lease (batchlab.teach.chaos_workers)")
    p.add_argument("--lease-s", type=float, default=1.5, help="with --workers: the shard lease's length")
    p.add_argument("--timeout-s", type=float, default=900.0,
                   help="with --workers: how long the batch may take in all before the workers are stopped")
    p.add_argument("--store", default=None, metavar="URL",
                   help="with --workers: the batch in a PostgreSQL store (postgresql://...); needs --batch-id")
    p.add_argument("--batch-id", default=None, help="with --store: the batch to publish and run under chaos")
    p.add_argument("--restart-server", default=None, metavar="CMD",
                   help="with --store: a shell command that restarts the server, run once mid-chaos "
                        "(e.g. `pg_ctl -D DATA restart -m immediate`)")
    p.set_defaults(func=cmd_chaos)
