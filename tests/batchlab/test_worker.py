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
