"""Acceptance scenarios: two-pass (or more) crash-and-resume runs of the whole processor in child processes.

They belong to no step (``--step`` leaves them out). Each scenario's points are
split over its checks (see ``grader/scenarios.py``); a scenario whose passes did
not run, or whose planned crash or faults never fired, scores 0 with the reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from grader.acceptance import judge, scenario_param
from grader.scenarios import PUBLIC_SCENARIOS

BY_NAME = {sc.name: sc for sc in PUBLIC_SCENARIOS}


@pytest.mark.parametrize("name", [scenario_param(sc) for sc in PUBLIC_SCENARIOS])
def test_scenario(name: str, grade: Any, request: pytest.FixtureRequest) -> None:
    """An acceptance scenario meets the lesson's thresholds, exactly once, with an honest report"""
    judge(grade, request, BY_NAME[name])
