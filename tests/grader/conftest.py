"""Fixtures for the grader's own tests (helpers in ``grader_runs.py``).

The grader runs (``python -m pytest grader`` children, 10-60 s each) are the bulk of the suite. They start in a
background pool as soon as collection ends, and the tests that read them run last: the rest of the suite runs
meanwhile, and fills the time the runs spend waiting on their scenarios' simulated service.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The helpers beside this file are imported by name, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from grader_runs import GraderRuns  # noqa: E402
from shared_runs import PublishedRuns, RunsFromOwner  # noqa: E402

RUNS = pytest.StashKey[Any]()
#: Under pytest-xdist: the folder, beside the workers' own temporary folders, where one worker's runs are shared.
SHARED_RUNS = "grader-runs-shared"


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


def _reads_runs(item: pytest.Item) -> bool:
    return "grader_runs" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that read grader runs go last (in their own order), so the suite does not sit waiting for them."""
    items[:] = [i for i in items if not _reads_runs(i)] + [i for i in items if _reads_runs(i)]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the grader runs the selected tests need, now, in the background (none when no such test is selected)."""
    config = session.config
    wanted = _runs_wanted(session.items)
    if wanted and not config.option.collectonly and RUNS not in config.stash:
        factory = config._tmp_path_factory  # pytest's own tmp factory, as tmp_path_factory
        if not hasattr(config, "workerinput"):  # one process: its own pool
            config.stash[RUNS] = GraderRuns(factory.mktemp("grader-runs"), wanted=wanted)
            return
        shared = factory.getbasetemp().parent / SHARED_RUNS  # xdist: the session's folder, above each worker's
        try:
            shared.mkdir()
        except FileExistsError:  # another worker owns the pool
            config.stash[RUNS] = RunsFromOwner(shared, lambda: GraderRuns(factory.mktemp("grader-runs"), wanted=set()))
        else:
            config.stash[RUNS] = PublishedRuns(shared, wanted=wanted)


def pytest_sessionfinish(session: pytest.Session) -> None:
    runs = session.config.stash.get(RUNS, None)
    if runs is not None:
        runs.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The grader runs' wall times, longest first (the suite's largest part; README "Benchmarks")."""
    runs = config.stash.get(RUNS, None)
    if runs is None or not runs.durations():
        return
    durations = runs.durations()
    terminalreporter.section("grader runs (wall s, two at a time)")
    total = sum(seconds for _, seconds in durations)
    terminalreporter.write_line(f"{len(durations)} runs, {total:.0f} s in all; slowest: " + ", ".join(
        f"{name} {seconds:.1f}" for name, seconds in durations[:12]))


@pytest.fixture(scope="session")
def grader_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The grader runs of the selected tests (reference with --hidden, skeleton, broken and correct variants,
    the reference up to each step), started when collection ended, or here when a test asks for one unforeseen."""
    runs = request.config.stash.get(RUNS, None)
    if runs is None:
        runs = GraderRuns(tmp_path_factory.mktemp("grader-runs"), wanted=set())
        request.config.stash[RUNS] = runs
    return runs
