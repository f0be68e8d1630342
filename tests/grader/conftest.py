"""Fixtures for the grader's own tests (helpers in ``grader_runs.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers beside this file are imported by name, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader_runs import GraderRuns  # noqa: E402


@pytest.fixture(scope="session")
def grader_runs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every grader run (reference with --hidden, skeleton, each broken variant), started on first use."""
    runs = GraderRuns(tmp_path_factory.mktemp("grader-runs"))
    yield runs
    runs.close()
