"""The grading session's state, the fixture tests grade with, and how a test's report becomes a scored record.

Apart from ``grader/conftest.py``, which keeps only pytest's hooks (options, configuration, collection,
the session's end): what a hook *does* with a report (points earned, the student's message, a grader
error, the test's number and title in the score table) and what ``results.json`` summarises are plain
functions over :class:`GraderSession`, readable and testable without a pytest run's plumbing.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from . import integrity
from .bubblewrap import Sandbox
from .results import GraderError, SessionSummary, TestRecord
from .sandbox import Verdict
from .scenarios import HIDDEN_SCENARIO_COUNT
from .steps import step_number
from .tasks import Context, Scheduler

EARNED = pytest.StashKey[float]()
NOTE = pytest.StashKey[str]()
SCENARIO = pytest.StashKey[dict[str, Any]]()


@dataclass
class GraderSession:
    ctx: Context
    scheduler: Scheduler
    results_path: Path
    step: str | None
    hidden: bool
    impl_problem: str | None = None
    records: list[TestRecord] = field(default_factory=list)
    grader_errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    written: bool = False
    sandbox: Sandbox = field(default_factory=lambda: Sandbox("none", "not configured"))
    left_behind: int = 0
    kit: integrity.KitSnapshot | None = None
    kit_changed: list[str] = field(default_factory=list)


SESSION = pytest.StashKey[GraderSession]()


def step_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("step")
    return marker.args[0] if marker else None


class Grade:
    """The fixture tests use: wait for facts, fail with a message, give partial points."""

    def __init__(self, item: pytest.Item, gs: GraderSession) -> None:
        self.item = item
        self.gs = gs

    @property
    def ctx(self) -> Context:
        return self.gs.ctx

    def facts(self, name: str | None = None) -> Any:
        if self.gs.impl_problem:
            self.fail(f"not graded: {self.gs.impl_problem}")
        if name is None:
            marker = self.item.get_closest_marker("task")
            if marker is None:
                raise GraderError(f"{self.item.nodeid} names no task")
            name = marker.args[0]
        return self.gs.scheduler.result(name)

    def verdict(self, what: str, name: str | None = None) -> Any:
        """The data of a probe task, or a failure explaining why there is none."""
        verdict: Verdict = self.facts(name)
        if verdict.is_grader_error:
            raise GraderError(verdict.failure(what))
        if not verdict.ok:
            self.fail(verdict.failure(what))
        return verdict.data

    def fail(self, message: str, *, earned: float = 0.0) -> NoReturn:
        self.item.stash[EARNED] = earned
        pytest.fail(message, pytrace=False)

    def note(self, message: str) -> None:
        """What the results show for a passing test."""
        self.item.stash[NOTE] = message

    def scenario(self, data: dict[str, Any]) -> None:
        self.item.stash[SCENARIO] = data


def number_of(item: pytest.Item, gs: GraderSession) -> str:
    step = step_of(item)
    same = [r for r in gs.records if r.step == step and (r.scenario is not None) == (
        item.get_closest_marker("scenario") is not None)]
    if step:
        return f"{step_number(step)}.{len(same) + 1}"
    hidden = "/hidden/" in item.nodeid.replace("\\", "/")
    prefix = "H" if hidden else "A"
    return f"{prefix}.{sum(1 for r in gs.records if r.number.startswith(prefix + '.')) + 1}"


def title_of(item: pytest.Item) -> str:
    scen = item.get_closest_marker("scenario")
    if scen and scen.args:
        return str(scen.args[0])
    doc = getattr(getattr(item, "function", None), "__doc__", None) or item.name
    first = doc.strip().splitlines()[0].rstrip(".")
    step = step_of(item)
    return f"{step}: {first}" if step else first


def record_report(item: pytest.Item, rep: pytest.TestReport, call: pytest.CallInfo[Any], gs: GraderSession) -> None:
    """Score one report of ``item`` into ``gs.records`` (its call, or a setup that failed); a failed teardown is a
    grader error. A ``grade.fail`` earns what the test stashed; any other exception is the grader's fault."""
    if rep.when == "call" or (rep.when == "setup" and not rep.passed):
        marker = item.get_closest_marker("points")
        max_score = float(marker.args[0]) if marker else 0.0
        grader_error = None
        hidden = "/hidden/" in item.nodeid.replace("\\", "/")
        scenario = item.stash.get(SCENARIO, None)
        if rep.passed:
            score, status, output = max_score, "passed", item.stash.get(NOTE, "passed")
        elif rep.skipped:
            score, status, output = 0.0, "failed", f"skipped: {rep.longreprtext[-500:]}"
        else:
            exc = call.excinfo
            if exc is not None and isinstance(exc.value, pytest.fail.Exception):
                score = min(item.stash.get(EARNED, 0.0), max_score)
                status, output = "failed", str(exc.value.msg)
                if "replay:" not in output:
                    output += (f"\nreplay: python -m pytest '{item.nodeid}' --impl {gs.ctx.impl}"
                               + (" --hidden" if hidden else ""))
            else:
                detail = (exc.exconly() if exc else "") + "\n" + (
                    "".join(traceback.format_tb(exc.tb)[-4:]) if exc else rep.longreprtext[-2000:])
                grader_error = f"{item.nodeid}: {detail.strip()}"
                gs.grader_errors.append(grader_error)
                score, status = 0.0, "failed"
                output = f"GRADER ERROR (not your fault; a TA will look at it): {detail.strip()[-1500:]}"
        gs.records.append(TestRecord(
            nodeid=item.nodeid, name=title_of(item), number=number_of(item, gs), step=step_of(item),
            max_score=max_score, score=score, status=status, output=output,
            visibility="after_published" if hidden else "visible", grader_error=grader_error, scenario=scenario,
            duration_s=rep.duration))
    elif rep.when == "teardown" and rep.failed:
        gs.grader_errors.append(f"{item.nodeid} (teardown): {rep.longreprtext[-1500:]}")


#: Collection errors: a failed collection has no test to score, so the summary names them.
COLLECT_ERRORS: list[str] = []


UNFINISHED = ("grading did not finish: the grader was stopped or killed before it wrote the results "
              "(by the submission? a grader without bubblewrap cannot prevent that); score 0")


def session_summary(gs: GraderSession, *, unfinished: bool = False) -> SessionSummary:
    extra: dict[str, Any] = {"sandbox": gs.sandbox.info(), "processes_left_behind": gs.left_behind,
                             "kit_changed": gs.kit_changed}
    errors = [*gs.grader_errors, *COLLECT_ERRORS]
    if unfinished:
        extra["unfinished"] = True
        errors.append(UNFINISHED)
    return SessionSummary(
        records=gs.records, hidden_count=HIDDEN_SCENARIO_COUNT, hidden_run=gs.hidden, step=gs.step,
        grader_errors=errors, impl=str(gs.ctx.impl), duration_s=time.monotonic() - gs.started,
        thresholds={name: t.text for name, t in gs.ctx.thresholds.items()}, extra=extra)
