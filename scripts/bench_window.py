"""The batch window and the global offset (a benchmark, not a test): the worker's memory and a no-op rerun at scale.

For each N it writes a JSON Lines batch (``batchlab make-input --docs N --min-bytes 200 --max-bytes 600
--format jsonl``, about 540 bytes a document) and runs the reference in ``python -m batchlab.worker`` over a
run directory (``runner.prepare``: zero-latency service, no faults, concurrency 8), as ``batchlab run`` does:

* **pass 1**: the whole batch;
* **pass 2**: a no-op rerun of the finished batch, resuming from the global offset (全局 offset);
* **pass 3**: the same no-op rerun with the offset taken away (the ``positions_*.sqlite`` file beside the
  checkpoint deleted): the per-document markers only, every entry read, parsed and looked up again.

Each pass: the worker's wall time (its whole life: start, imports, opening the input, the processor's run),
``run_s`` (the processor's own ``wall_time_s``) and the worker's peak resident memory (``ru_maxrss`` of that
one child from ``os.wait4``). The worker is started from this small process, not from the runner: a child's
``ru_maxrss`` counts the parent's pages it was forked with, and a runner that has read a large ledger is large.

    python scripts/bench_window.py                       # N = 10 000 and 100 000
    python scripts/bench_window.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PASSES = ((1, "first pass"), (2, "no-op, offset"), (3, "no-op, markers only"))


def worker_pass(run_dir: Path, pass_no: int) -> dict[str, Any]:
    """One pass of ``python -m batchlab.worker``: its wall time, exit code and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "batchlab.worker", str(run_dir), "--pass", str(pass_no)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    report = json.loads((run_dir / f"pass{pass_no}.report.json").read_text(encoding="utf-8"))
    return {"wall_s": round(wall, 2), "run_s": round(report["wall_time_s"], 2), "executed": report["executed"],
            "offset_index": report.get("offset_index", 0), "worker_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "exit": os.waitstatus_to_exitcode(status)}


def measure(n: int, work: Path) -> dict[str, Any]:
    """Write the batch, then run the three passes; their figures."""
    from batchlab.contract import BatchConfig
    from batchlab.faults import FaultPlan
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, prepare
    from batchlab.service import LatencyModel

    source = work / f"input-{n}.jsonl"
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("batchlab")), "make-input", "--docs", str(n), "--min-bytes",
                    "200", "--max-bytes", "600", "--format", "jsonl", "--out", str(source)], check=True,
                   capture_output=True)
    out: dict[str, Any] = {"n": n, "input_mb": round(source.stat().st_size / 2**20, 1),
                           "make_input_s": round(time.perf_counter() - t0, 1)}
    spec = RunSpec(impl=solution_module(), input=source, run_dir=work / f"run-{n}", plan=FaultPlan(),
                   latency=LatencyModel(median_ms=0.0), config=BatchConfig(concurrency=8), timeout_s=7200)
    prepare(spec, fresh=True)
    for pass_no, name in PASSES:
        if pass_no == 3:
            for path in (spec.run_dir / "state").glob("positions_*"):
                path.unlink()
        out[name] = worker_pass(spec.run_dir, pass_no)
    out["checkpoint_mb"] = round(sum(p.stat().st_size for p in (spec.run_dir / "state").iterdir()) / 2**20, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                      "load_average": os.getloadavg()}))
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-window-") as work:
            print(json.dumps(measure(n, Path(work))), flush=True)


if __name__ == "__main__":
    main()
