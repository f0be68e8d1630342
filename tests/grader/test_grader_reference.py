"""The grader on the reference solution: full marks, public and hidden, with every artefact written."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_reference_scores_full_marks_public_and_hidden(grader_runs: Any) -> None:
    """Every step test and every scenario, hidden ones included, gives the reference all its points."""
    run = grader_runs.get("reference")
    data = run.results
    failed = {t["name"]: t["output"][:400] for t in data["tests"] if t["status"] != "passed"}
    assert not failed, failed
    assert data["score"] == data["max_score"] > 0
    assert data["extra_data"]["grader_errors"] == []
    assert run.returncode == 0, run.stdout[-2000:]


def test_reference_run_includes_every_hidden_scenario(grader_runs: Any) -> None:
    """With --hidden the hidden scenarios run, are numbered H.n, and are only visible after publication."""
    from grader.hidden.scenarios import HIDDEN_SCENARIOS
    from grader.scenarios import HIDDEN_SCENARIO_COUNT

    data = grader_runs.get("reference").results
    hidden = [t for t in data["tests"] if t["number"].startswith("H.")]
    assert len(hidden) == len(HIDDEN_SCENARIOS) == HIDDEN_SCENARIO_COUNT == data["extra_data"]["hidden_scenarios"]
    assert {t["visibility"] for t in hidden} == {"after_published"}
    assert data["extra_data"]["hidden_run"] is True
    assert data["stdout_visibility"] == "after_published"  # the printed output describes the hidden scenarios


def test_reference_run_writes_one_metrics_file_per_scenario(grader_runs: Any) -> None:
    """Beside results.json, a metrics JSON per scenario holds the figures, the checks and the crash plans."""
    run = grader_runs.get("reference")
    scenarios = [t for t in run.results["tests"] if t["number"][0] in "AH"]
    files = sorted((run.results_path.parent / "metrics").glob("*.json"))
    assert len(files) == len(scenarios)
    sample = json.loads(files[0].read_text(encoding="utf-8"))
    assert {"completion_rate", "duplicate_rate", "fail_rate", "resume_time_s"} <= set(sample["metrics"])
    assert sample["checks"] and sample["crash_plans"] is not None and sample["seed"] is not None
    assert not list(run.results_path.parent.glob("*.timeline.png")), "a passing scenario leaves no timeline"


def test_reference_run_ends_with_a_score_table(grader_runs: Any) -> None:
    """The terminal shows points per test, scenario metrics against thresholds, the total and an honest line."""
    out = grader_runs.get("reference").stdout
    assert "grader score" in out
    assert "total" in out and "completion" in out and ">= 99 %" in out
    assert "hidden scenarios included" in out
    assert "all tests passed" not in out.lower()
