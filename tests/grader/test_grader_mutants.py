"""Broken variants lose the points for what they break, and only those (tests/mutants/*.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from grader_runs import MUTANTS, load_mutant

pytestmark = pytest.mark.slow


def _failed_checks(output: str) -> set[str]:
    checks = set(re.findall(r"^FAILED (.+?) \([\d.]+ pts\):", output, re.M))
    if "scenario not scored:" in output:
        checks.add("not scored")
    return checks


@pytest.mark.parametrize("name", MUTANTS)
def test_broken_variant_loses_exactly_what_it_breaks(name: str, grader_runs: Any) -> None:
    """The variant loses every test it must lose, no other (bar kill-timing cases), and says which invariant broke."""
    mutant = load_mutant(name)
    run = grader_runs.get(name)
    data = run.results
    assert data["extra_data"]["grader_errors"] == [], data["extra_data"]["grader_errors"]
    tests = run.tests()
    lost = run.lost()
    if mutant.LOSES == "all":
        assert data["score"] == 0 and set(lost) == set(tests)
    else:
        missing = set(mutant.LOSES) - set(lost)
        extra = set(lost) - set(mutant.LOSES) - set(mutant.MAY_LOSE)
        assert not missing, f"{name} should lose {sorted(missing)} (score {data['score']})"
        assert not extra, f"{name} lost points it does not deserve: " + "; ".join(
            f"{tid}: {tests[tid]['output'][:300]}" for tid in sorted(extra))
        for tid in mutant.LOSES:
            if tid.startswith("test_scenario["):
                bad = _failed_checks(tests[tid]["output"]) - set(mutant.SCENARIO_CHECKS)
                assert not bad, f"{tid} failed checks {sorted(bad)} beyond {sorted(mutant.SCENARIO_CHECKS)}"
    outputs = "\n".join(tests[tid]["output"] for tid in lost)
    assert re.search(mutant.MESSAGE, outputs), f"no feedback matches {mutant.MESSAGE!r}:\n{outputs[:1500]}"
    assert 0 <= data["score"] < data["max_score"]
