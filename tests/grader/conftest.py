"""Fixtures for the grader's own tests (helpers in ``grader_runs.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers beside this file are imported by name, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader_runs import GraderRuns  # noqa: E402


def _runs_wanted(items: list[pytest.Item]) -> set[str]:
    """The grader runs the selected tests will ask for (a run not foreseen here is started when asked for)."""
    wanted: set[str] = set()
    for item in items:
        module = item.path.stem
        param = getattr(getattr(item, "callspec", None), "params", {}).get("name")
        if module == "test_grader_reference":
            wanted.add("reference")
        elif module == "test_grader_skeleton":
            wanted.add("skeleton")
        elif module == "test_grader_mutants" and param:
            wanted.add(param)
        elif module == "test_grader_variants" and param:
            wanted.add(f"variant-{param}")
        elif module == "test_grader_steps_in_order" and param:
            wanted.add(f"upto-{param}")
    return wanted


@pytest.fixture(scope="session")
def grader_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The grader runs of the selected tests (reference with --hidden, skeleton, broken and correct variants,
    the reference up to each step), started together on first use."""
    runs = GraderRuns(tmp_path_factory.mktemp("grader-runs"), wanted=_runs_wanted(request.session.items))
    yield runs
    runs.close()
