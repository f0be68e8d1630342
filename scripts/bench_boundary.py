"""Cost of the process boundary (a benchmark, not a test): one pass of the reference, in-process vs boundary.

A zero-latency pass over ``--docs`` documents (default 1000) measures the harness's own per-call
overhead: the service answers at once, so what is left is the processor, the sink, the ledger and,
with ``RunSpec.boundary``, one socket round trip per call and per sink operation. Median of ``--repeat``
runs of each, interleaved; the figures as one JSON line.

    python scripts/bench_boundary.py                  # 1000 documents, median of 3
    python scripts/bench_boundary.py --docs 200 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from batchlab.examples import make_documents, write_input
from batchlab.faults import CrashPlan
from batchlab.paths import kit_root
from batchlab.runner import RunSpec, prepare, run_pass
from batchlab.service import LatencyModel


def one_pass(impl: Path, input_path: Path, run_dir: Path, *, boundary: bool) -> tuple[float, int]:
    spec = RunSpec(impl=impl, input=input_path, run_dir=run_dir, latency=LatencyModel(median_ms=0.0),
                   boundary=boundary, timeout_s=600)
    prepare(spec, fresh=True)
    started = time.perf_counter()
    result = run_pass(spec, 1, CrashPlan())
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the pass failed ({result.outcome}):\n{result.stderr[-2000:]}")
    calls = sum(1 for line in (run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
                if '"ev":"call_start"' in line)
    return elapsed, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    impl = kit_root() / "labs" / "solution" / "lab03" / "src" / "services" / "document_processor.py"
    with tempfile.TemporaryDirectory() as tmp:
        input_path = write_input(Path(tmp) / "input.json", make_documents(args.docs))
        times: dict[str, list[float]] = {"in_process": [], "boundary": []}
        calls = 0
        for i in range(args.repeat):
            for name in times:
                elapsed, calls = one_pass(impl, input_path, Path(tmp) / f"run-{name}-{i}", boundary=name == "boundary")
                times[name].append(elapsed)
        med = {name: statistics.median(values) for name, values in times.items()}
        print(json.dumps({"docs": args.docs, "calls": calls, "repeat": args.repeat, "load": os.getloadavg()[0],
                          "median_s": {k: round(v, 3) for k, v in med.items()},
                          "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
                          "overhead_per_call_ms": round((med["boundary"] - med["in_process"]) / max(calls, 1) * 1000,
                                                        4)}))


if __name__ == "__main__":
    main()
