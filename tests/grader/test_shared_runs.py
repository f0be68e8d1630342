"""The grader runs shared by the suite's xdist workers (``shared_runs.py``): run once, read by every worker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from grader_runs import GraderRuns
from shared_runs import PLAN, PublishedRuns, RunsFromOwner


def _no_local() -> GraderRuns:
    raise AssertionError("this worker must not run a grader run of its own")


def test_a_worker_reads_the_owners_run_as_the_owner_has_it(tmp_path: Path) -> None:
    """The owner grades once (a module that does not import: a real grader run of a second); another worker gets
    the same exit, output and results file from the published run, and runs nothing itself."""
    owner = PublishedRuns(tmp_path / "shared", wanted={"import_error"})
    try:
        mine = owner.get("import_error")
    finally:
        owner.close()
    theirs = RunsFromOwner(tmp_path / "shared", _no_local).get("import_error")
    assert (theirs.returncode, theirs.stdout, theirs.results) == (mine.returncode, mine.stdout, mine.results)
    assert theirs.results["score"] == 0 and theirs.duration_s == mine.duration_s


def test_a_run_the_owner_did_not_plan_is_graded_by_the_worker_that_asks(tmp_path: Path) -> None:
    """A run missing from the owner's plan is not waited for: the asking worker grades it in its own folder."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / PLAN).write_text(json.dumps({"pid": 1, "runs": ["reference"], "build_errors": {}}), encoding="utf-8")
    local = RunsFromOwner(shared, lambda: GraderRuns(tmp_path / "local", wanted=set()))
    try:
        run = local.get("import_error")
    finally:
        local.close()
    assert run.results_path.is_relative_to(tmp_path / "local") and run.results["score"] == 0


def test_a_worker_waiting_on_a_dead_owner_fails_saying_so(tmp_path: Path) -> None:
    """When the owning worker ended without writing a planned run, the waiting test fails at once with the reason
    instead of waiting for an hour."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    plan = {"pid": int(dead.stdout), "runs": ["reference"], "build_errors": {}}
    (shared / PLAN).write_text(json.dumps(plan), encoding="utf-8")
    with pytest.raises(AssertionError, match=r"owned the grader runs .* ended without"):
        RunsFromOwner(shared, _no_local, sleep=lambda _s: None).get("reference")


def test_a_run_the_owner_could_not_build_fails_in_every_worker_with_its_reason(tmp_path: Path) -> None:
    """A mutant whose replacement no longer matches the solution fails the asking test with the owner's message."""
    shared = tmp_path / "shared"
    shared.mkdir()
    plan = {"pid": 1, "runs": [], "build_errors": {"no_checkpoint": "expected the text to replace exactly once"}}
    (shared / PLAN).write_text(json.dumps(plan), encoding="utf-8")
    with pytest.raises(AssertionError, match="exactly once"):
        RunsFromOwner(shared, _no_local).get("no_checkpoint")
