"""The benchmark runs the real pieces and reports every figure next to its target (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab.teach.bench import TARGETS, format_bench, run_bench

pytestmark = pytest.mark.slow


def test_bench_reports_every_target_from_real_runs(reference_impl: Path) -> None:
    sizes = {"throughput": 150, "resume_small": 200, "resume_large": 300, "orchestration": 100}
    result = run_bench(impl=reference_impl, sizes=sizes)
    assert set(result["targets"]) == set(TARGETS)
    run = result["details"]["run1"]
    assert run["throughput"]["noop_rerun_executed"] == 0  # the rerun really found everything done
    assert run["throughput"]["calls"] > 150 and run["orchestration"]["calls"] > 100
    for key in ("resume_small", "resume_large"):
        assert run[key]["pass1_outcome"] == "killed" and run[key]["pass2_outcome"] == "killed"
        assert run[key]["resume_time_s"] is not None and run[key]["resume_time_s"] > 0
    assert "throughput_ratio" in format_bench(result)
