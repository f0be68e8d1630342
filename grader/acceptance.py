"""Judging one acceptance scenario inside a pytest test (shared by public and hidden scenarios)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

from .scenarios import Scenario, ScenarioRun, evaluate
from .timeline import draw_timeline


def scenario_param(sc: Scenario) -> Any:
    """The pytest parameter of a scenario: its points, its task and its title travel as marks."""
    return pytest.param(sc.name, id=sc.name, marks=[pytest.mark.points(sc.points), pytest.mark.task(f"run:{sc.name}"),
                                                    pytest.mark.scenario(f"scenario {sc.name}: {sc.title}")])


def judge(grade: Any, request: pytest.FixtureRequest, sc: Scenario) -> None:
    run: ScenarioRun = grade.facts(f"run:{sc.name}")
    ctx = grade.ctx
    replay = (f"python -m pytest {shlex.quote(request.node.nodeid)} --impl {shlex.quote(str(ctx.impl))}"
              + (" --hidden" if sc.hidden else ""))
    result = evaluate(run, ctx.thresholds, replay=replay)
    metrics_dir = ctx.area("metrics")
    (metrics_dir / f"{sc.name}.json").write_text(
        json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    grade.scenario(result.to_dict())
    if not result.passed:
        m = run.metrics
        picture = draw_timeline(run.events, ctx.results_dir / f"{sc.name}.timeline.png",
                                title=f"{sc.name} (seed {sc.seed}): {sc.describe_crashes(run.crash_plans)}",
                                highlight=[d.doc_id for d in m.duplicates] + m.missing[:10])
        text = result.feedback() + (f"\ntimeline: {picture}" if picture else "")
        grade.fail(text, earned=result.earned)
    grade.note(result.summary_line() + "\n" + result.feedback())
