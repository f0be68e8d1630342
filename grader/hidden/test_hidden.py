"""Hidden acceptance scenarios (only with ``pytest grader --hidden``)."""

from __future__ import annotations

from typing import Any

import pytest

from grader.acceptance import judge, scenario_param
from grader.hidden.scenarios import HIDDEN_SCENARIOS

BY_NAME = {sc.name: sc for sc in HIDDEN_SCENARIOS}


@pytest.mark.parametrize("name", [scenario_param(sc) for sc in HIDDEN_SCENARIOS])
def test_hidden_scenario(name: str, grade: Any, request: pytest.FixtureRequest) -> None:
    """A hidden scenario meets the lesson's thresholds, exactly once, with an honest report"""
    judge(grade, request, BY_NAME[name])
