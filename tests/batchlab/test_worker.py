"""The worker process: what it does with a run directory it cannot read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.rundir import RunDir
from batchlab.worker import WorkerExit


@pytest.mark.parametrize("spec_text", ["{not json", "[]", '{"impl": 3, "input": "x.json"}'])
def test_a_damaged_spec_is_refused_with_the_unified_error_and_nothing_is_written(tmp_path: Path,
                                                                                 spec_text: str) -> None:
    """A spec.json that is not a spec: exit 2, ``run_dir_corrupt`` as strict JSON, no traceback, no ledger."""
    run_dir = RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    run_dir.spec.write_text(spec_text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "batchlab.worker", str(run_dir.path), "--wait-lock", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == WorkerExit.INPUT, proc.stderr
    assert "Traceback" not in proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "run_dir_corrupt"
    assert not run_dir.ledger.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_sigkill_mid_batch_then_a_resume_from_the_global_offset_loses_nothing_and_redoes_nothing(
        tmp_path: Path, fmt: str) -> None:
    """The worker hands the reference a stream; killed for real after 2500 commits of 3000, the resume starts at
    the global offset it wrote (past the finished prefix, unread), and every document ends committed exactly once."""
    from batchlab.contract import BatchConfig
    from batchlab.examples import iter_documents, write_documents
    from batchlab.faults import CrashPlan
    from batchlab.metrics import metrics_for_run
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, prepare, run_pass
    from batchlab.service import LatencyModel

    source = tmp_path / f"input.{fmt}"
    write_documents(source, iter_documents(3000, seed=4, min_bytes=80, max_bytes=300), format=fmt)  # type: ignore[arg-type]
    spec = RunSpec(impl=solution_module(), input=source, run_dir=tmp_path / "run",
                   latency=LatencyModel(median_ms=0.0), config=BatchConfig(concurrency=8), timeout_s=300)
    prepare(spec, fresh=True)
    first = run_pass(spec, 1, CrashPlan(kind="after_commit", at=2500))
    assert first.sigkilled, first
    assert (tmp_path / "run" / "input.checked.json").exists(), "the validated input is remembered for the resume"
    second = run_pass(spec, 2)
    assert second.outcome == "ok", second
    report = json.loads((tmp_path / "run" / "pass2.report.json").read_text(encoding="utf-8"))
    assert 1000 <= report["offset_index"] <= 2500 and report["total"] == 3000
    metrics = metrics_for_run(tmp_path / "run")
    assert (metrics.completion_rate, metrics.duplicate_rate) == (1.0, 0.0)
    third = run_pass(spec, 3)
    assert third.outcome == "ok"
    rerun = json.loads((tmp_path / "run" / "pass3.report.json").read_text(encoding="utf-8"))
    assert (rerun["offset_index"], rerun["executed"], rerun["total"]) == (3000, 0, 3000)
