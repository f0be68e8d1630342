"""Correct variants in other styles earn every point they are graded on (tests/variants/*.py).

A new check lands only with proof that the correct styles still pass (the grader
is graded, README "How grading works"): here an append-only JSON-lines checkpoint (all public tests and
the hidden scenarios) and a plain default-settings SQLite checkpoint (slow
fsynced commits; the checkpoint step).
"""

from __future__ import annotations

from typing import Any

import pytest
from grader_runs import VARIANTS, load_variant

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", VARIANTS)
def test_correct_variant_scores_full_marks(name: str, grader_runs: Any) -> None:
    """Every test the variant is graded on passes, with no grader error."""
    variant = load_variant(name)
    run = grader_runs.get(f"variant-{name}")
    data = run.results
    assert data["extra_data"]["grader_errors"] == [], data["extra_data"]["grader_errors"]
    failed = {f"{t['number']} {t['name']}": t["output"][:500] for t in data["tests"] if t["score"] < t["max_score"]}
    assert not failed, failed
    assert data["tests"] and data["score"] == data["max_score"] > 0
    if "--hidden" in getattr(variant, "GRADER_ARGS", []):
        assert any(t["number"].startswith("H.") for t in data["tests"])
