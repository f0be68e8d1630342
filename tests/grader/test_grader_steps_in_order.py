"""Every step's check passes as soon as that step is written, in the notebooks' order (issue 8, item 4).

For each step NN, the reference *up to NN* (steps 01..NN written, every later
region the skeleton's TODO: what a student has who just finished notebook NN) is
graded on the step test files 01..NN, and on the next step's file: steps 01..NN
must earn every point, so no check of step NN needs code of a later step; the
next step must earn none, each of its tests naming that step's TODO, so the
later regions really were stripped.
"""

from __future__ import annotations

from typing import Any

import pytest
from batchlab.paths import solution_module
from batchlab.teach.release import render_student
from grader_runs import STEP_NUMBERS, solution_up_to

pytestmark = pytest.mark.slow

#: Step 06 (the report) is written in step 05's region: no TODO of its own.
OWN_REGIONS = {"01", "02", "03", "04", "05"}


def test_the_reference_up_to_no_step_is_the_skeleton() -> None:
    """Stripping every region the same way as `batchlab release` gives exactly the skeleton."""
    solution = solution_module().read_text(encoding="utf-8")
    assert solution_up_to("00", solution) == render_student(solution_module())


def test_the_reference_up_to_the_last_step_is_the_reference_without_markers() -> None:
    """Keeping every region gives the reference's code, markers removed, and no TODO."""
    solution = solution_module().read_text(encoding="utf-8")
    full = solution_up_to("06", solution)
    assert "SOLUTION" not in full and "TODO step" not in full
    assert full == "".join(line for line in solution.splitlines(keepends=True) if "SOLUTION" not in line)


@pytest.mark.parametrize("name", STEP_NUMBERS)
def test_each_step_scores_full_marks_once_it_is_written(name: str, grader_runs: Any) -> None:
    """Up to step NN: every test of steps 01..NN passes; the next step (if it has code of its own) earns nothing."""
    run = grader_runs.get(f"upto-{name}")
    data = run.results
    assert data["extra_data"]["grader_errors"] == [], data["extra_data"]["grader_errors"]
    tests = data["tests"]
    steps_done = {s for s in STEP_NUMBERS if s <= name}
    done = [t for t in tests if t["number"].split(".")[0] in steps_done]
    assert done, f"no test of steps up to {name} ran"
    missed = {f"{t['number']} {t['name']}": t["output"][:500] for t in done if t["score"] < t["max_score"]}
    assert not missed, f"with steps 01..{name} written, these checks still fail:\n{missed}"
    following = f"{int(name) + 1:02d}"
    later = [t for t in tests if t["number"].split(".")[0] == following]
    if following in OWN_REGIONS:
        assert later, f"step {following}'s tests did not run"
        assert all(t["score"] == 0 for t in later), [t["name"] for t in later if t["score"] > 0]
        assert all(f"TODO step {following}" in t["output"] for t in later), [t["output"][:200] for t in later]
