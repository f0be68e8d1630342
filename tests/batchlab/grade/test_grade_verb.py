"""``batchlab grade --exec --impl FILE -- OPTIONS``: the child ``grade-all`` and the autograder start for each file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.paths import solution_module


@pytest.mark.slow
def test_exec_becomes_the_grader_and_passes_the_options_after_the_double_dash(tmp_path: Path) -> None:
    """With --exec the started process is the grader (its table, its exit code), and `-- --step idempotency` reaches it."""
    results = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "batchlab", "grade", "--exec", "--impl", str(solution_module()), "--results",
           str(results), "--", "--step", "idempotency"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-1500:]
    data = json.loads(results.read_text(encoding="utf-8"))
    assert data["extra_data"]["step"] == "idempotency" and data["score"] == data["max_score"] == 8
    assert "grader score" in out  # the grader's own table, printed by the process we started


def test_a_stray_argument_is_refused_rather_than_taken_for_a_test_path(tmp_path: Path) -> None:
    """`batchlab grade FILE` (the file without --impl) exits 2 with the unified error and a hint, grading nothing."""
    proc = subprocess.run([sys.executable, "-m", "batchlab", "grade", str(solution_module())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "usage_error" and "--impl" in error["hints"][0]
    assert not (tmp_path / "grader-results").exists()
