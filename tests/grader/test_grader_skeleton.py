"""The grader on the generated student skeleton: zero points, TODO feedback for every step, no grader error."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow


def test_skeleton_scores_zero_with_a_results_file(grader_runs: Any) -> None:
    """The untouched skeleton earns nothing, and the results file is still complete."""
    run = grader_runs.get("skeleton")
    data = run.results
    assert data["score"] == 0
    assert data["tests"] and all(t["status"] == "failed" and t["score"] == 0 for t in data["tests"])
    assert data["extra_data"]["grader_errors"] == []


def test_skeleton_gets_todo_feedback_for_every_step(grader_runs: Any) -> None:
    """Each failed test says which TODO step is missing, never a bare traceback."""
    data = grader_runs.get("skeleton").results
    steps = {t.get("tags", ["scenario"])[0] for t in data["tests"]}
    assert steps >= {"checkpoint", "idempotency", "backoff", "concurrency", "resume", "metrics", "scenario"}
    without = [t["name"] for t in data["tests"] if "not implemented yet (TODO step" not in t["output"]]
    assert not without, without
    by_step = {t["tags"][0]: t["output"] for t in data["tests"] if t.get("tags")}
    assert "TODO step 01" in by_step["checkpoint"] and "TODO step 02" in by_step["idempotency"]


def test_skeleton_run_says_how_many_hidden_scenarios_exist(grader_runs: Any) -> None:
    """A student's run ends with the public score and the number of hidden scenarios, not 'all tests passed'."""
    run = grader_runs.get("skeleton")
    assert "0 of " in run.stdout and "hidden scenarios run at grading" in run.stdout
    assert run.results["extra_data"]["hidden_scenarios"] >= 1
    assert run.results["stdout_visibility"] == "visible"  # a public run's output describes public checks only
