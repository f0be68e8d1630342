"""Large batches (a benchmark, not a test): writing and reading 100 000 and 1 000 000 documents.

Each measurement runs in a child process of its own and reports the child's wall time and peak
resident memory (``ru_maxrss`` from ``os.wait4``), median of ``--repeat`` runs:

* ``make-input``: ``batchlab make-input --docs N --min-bytes 200 --max-bytes 600`` (about 540 bytes a
  document, the issue's sizes) in both formats;
* reading: ``load_batch`` (the whole batch as a list; its 200 000-document limit lifted in the child, to
  measure what holding a million costs) against the stream (``iter_batch``: the validating pass, then
  the documents one at a time; and ``open_batch(validate=False)``: the documents only), on ``.json`` and
  ``.jsonl``; every reader touches each document (it counts them) and keeps none;
* ``import``: a child that only imports the harness, the floor under every figure.

    python scripts/bench_stream.py                    # 100k and 1M, 3 runs each (about 15 minutes on 2 cores)
    python scripts/bench_stream.py --sizes 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

READERS = {
    "import": "import batchlab.documents, batchlab.batchstream\nn = 0",
    "load_batch": ("import batchlab.batchfile as bf, batchlab.batchstream as bs\n"
                   "bf.MAX_BATCH_DOCUMENTS = bs.MAX_BATCH_DOCUMENTS = 10**9\n"
                   "n = sum(1 for raw in bf.load_batch(PATH).documents if raw is not None)"),
    "iter_batch": ("from batchlab.batchstream import iter_batch\n"
                   "header, docs = iter_batch(PATH)\nn = sum(1 for raw in docs if raw is not None)"),
    "stream, no validation": ("from batchlab.batchstream import open_batch\n"
                              "n = sum(1 for raw in open_batch(PATH, validate=False) if raw is not None)"),
}


def child(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv`` under a tiny wrapper that reports the child's own ``ru_maxrss`` (KB on Linux)."""
    wrapper = ("import os, subprocess, sys, time, json\n"
               "t = time.perf_counter(); p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
               "out = p.stdout.read(); _, st, ru = os.wait4(p.pid, 0)\n"
               "print(json.dumps({'wall': time.perf_counter() - t, 'kb': ru.ru_maxrss, 'status': st,"
               " 'out': out.decode()}))")
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    result = json.loads(proc.stdout)
    if result["status"]:
        raise SystemExit(f"{argv} failed with status {result['status']}: {result['out'][-2000:]}")
    return result["wall"], result["kb"] / 1024, result["out"]


def median_of(repeat: int, argv: list[str]) -> dict[str, object]:
    runs = [child(argv) for _ in range(repeat)]
    walls, peaks = [r[0] for r in runs], [r[1] for r in runs]
    return {"wall_s": round(statistics.median(walls), 2), "wall_range": [round(min(walls), 2), round(max(walls), 2)],
            "peak_rss_mb": round(statistics.median(peaks), 1), "out": runs[-1][2].strip()[-200:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="where the inputs go (default: a temporary folder)")
    ap.add_argument("--readers", nargs="+", choices=sorted(READERS), default=sorted(READERS),
                    help="measure only these readers (make-input then runs once, untimed)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    print(f"# {platform.machine()} Python {platform.python_version()}, load average {os.getloadavg()}",
          file=sys.stderr)
    for n in args.sizes:
        for fmt in ("jsonl", "json"):
            path = work / f"in_{n}.{fmt}"
            argv = [sys.executable, "-m", "batchlab", "make-input", "--docs", str(n), "--min-bytes", "200",
                    "--max-bytes", "600", "--format", fmt, "--out", str(path), "--force"]
            timed = args.readers == sorted(READERS)
            row = {"what": f"make-input {fmt}", "docs": n, **median_of(args.repeat if timed else 1, argv),
                   "file_mb": round(path.stat().st_size / 1e6, 1)}
            if timed:
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            for reader in args.readers:
                code = READERS[reader]
                script = f"PATH = {str(path)!r}\n{code}\nprint(n)"
                row = {"what": f"read {fmt}: {reader}", "docs": n,
                       **median_of(args.repeat, [sys.executable, "-c", script])}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
            path.unlink()
    print(json.dumps({"load_average_after": os.getloadavg(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
