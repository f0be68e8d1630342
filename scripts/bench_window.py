"""The batch window and the global offset (a benchmark, not a test): the worker's memory and a no-op rerun at scale.

For each N it writes a JSON Lines batch (``batchlab make-input --docs N --min-bytes 200 --max-bytes 600
--format jsonl``, about 540 bytes a document) and runs the reference through the harness's runner, as
``batchlab run`` does (zero-latency service, no faults, concurrency 8), in a child process of its own:

* **pass 1**: the whole batch; wall time and the worker's peak resident memory (the child's
  ``RUSAGE_CHILDREN`` ``ru_maxrss``: the worker is the only process it waits for);
* **pass 2**: a no-op rerun of the finished batch, resuming from the global offset (全局 offset);
* **pass 3**: the same no-op rerun with the offset taken away (the ``positions_*.sqlite`` file beside the
  checkpoint deleted): the per-document markers only, every entry read, parsed and looked up again.

Each pass's wall time is the worker's whole life (start, imports, opening the input, the processor's
run); ``run_s`` is the processor's own ``wall_time_s`` from its report.

    python scripts/bench_window.py                       # N = 10 000 and 100 000
    python scripts/bench_window.py --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def child(n: int, work: Path) -> dict[str, Any]:
    """Run the three passes in this process (the worker is its child) and return their figures."""
    from batchlab.contract import BatchConfig
    from batchlab.faults import CrashPlan, FaultPlan
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, prepare, run_pass
    from batchlab.service import LatencyModel

    source = work / f"input-{n}.jsonl"
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("batchlab")), "make-input", "--docs", str(n), "--min-bytes", "200",
                    "--max-bytes", "600", "--format", "jsonl", "--out", str(source)], check=True,
                   capture_output=True)
    made = time.perf_counter() - t0
    spec = RunSpec(impl=solution_module(), input=source, run_dir=work / f"run-{n}", plan=FaultPlan(),
                   latency=LatencyModel(median_ms=0.0), config=BatchConfig(concurrency=8), timeout_s=7200)
    prepare(spec, fresh=True)
    out: dict[str, Any] = {"n": n, "input_mb": round(source.stat().st_size / 2**20, 1), "make_input_s": round(made, 1)}
    for pass_no, name in ((1, "first pass"), (2, "no-op, offset"), (3, "no-op, markers only")):
        if pass_no == 3:
            for path in (spec.run_dir / "state").glob("positions_*"):
                path.unlink()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result = run_pass(spec, pass_no, CrashPlan())
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        report = json.loads((spec.run_dir / f"pass{pass_no}.report.json").read_text(encoding="utf-8"))
        out[name] = {"wall_s": round(result.duration_s, 2), "run_s": round(report["wall_time_s"], 2),
                     "executed": report["executed"], "offset_index": report.get("offset_index", 0),
                     # ru_maxrss only grows: a pass whose peak is below an earlier one's shows as null
                     "worker_peak_rss_mb": round(peak / 1024, 1) if peak > before or pass_no == 1 else None,
                     "outcome": result.outcome}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.work)))
        return
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine()}))
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bench-window-") as work:
            proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--work", work],
                                  capture_output=True, text=True, check=True)
            print(proc.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
