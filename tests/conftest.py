"""Fixtures shared by the kit's own tests.

No test reads or writes the student's working module
(``labs/student/lab03/src/services/document_processor.py``): a student runs this
suite in the middle of their work. Tests that need the skeleton get the one the
solution renders to, written into a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from batchlab.paths import STUDENT_MODULE, example_input, kit_root, solution_module
from batchlab.teach.release import render_student


def _load_pgserver() -> ModuleType | None:
    """``tests/pgserver.py`` (the throwaway PostgreSQL server), loaded by path: tests/ is no package.

    None where it is absent: a student distribution carries this file but not the PostgreSQL tests.
    """
    path = Path(__file__).with_name("pgserver.py")
    spec = importlib.util.spec_from_file_location("pgserver", path)
    if not path.exists() or spec is None or spec.loader is None:
        return None
    module = sys.modules["pgserver"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The test modules whose tests read grader runs (tests/grader/grader_runs.py), each test a work unit of its own.
GRADER_RUN_MODULES = frozenset({"test_grader_mutants.py", "test_grader_variants.py", "test_grader_reference.py",
                                "test_grader_skeleton.py", "test_grader_steps_in_order.py"})
#: Worker processes for the README's plain ``pytest`` (pytest-xdist): both cores of the 2-core machine CI runs on.
WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The README's plain ``pytest`` (the arguments come from ``testpaths``) runs on :data:`WORKERS` xdist workers.

    Only then: ``pytest tests/some_file.py``, ``pytest grader`` (the grader, whose own pool runs its children) and
    every grader child stay one process; ``-n N`` (``-n 0``: one process) or ``-p no:xdist`` overrides it.
    Modules are the work units (``--dist loadscope`` in collection order, :func:`pytest_xdist_make_scheduler`), so
    a module-scoped fixture runs once.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if (not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput")
            or config.args_source != pytest.Config.ArgsSource.TESTPATHS or config.option.numprocesses is not None
            or config.option.dist != "no" or config.option.tx or config.getoption("usepdb", False) or cpus < 2):
        return
    config.option.numprocesses = min(WORKERS, cpus)
    config.option.dist = "loadscope"
    config.option.loadscopereorder = False


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dependency of the kit; without it the suite runs in one process
    pass
else:
    class ModuleScheduling(LoadScopeScheduling):
        """A work unit per test module (a module-scoped fixture runs once), but one per test that reads a grader
        run: those wait for their run, and any worker may take the next one."""

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module.rsplit("/", 1)[-1] in GRADER_RUN_MODULES else module

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadScopeScheduling | None:
        """``--dist loadscope``: :class:`ModuleScheduling` (the grader-run tests, collected last, stay last)."""
        return ModuleScheduling(config, log) if config.getvalue("dist") == "loadscope" else None


def pytest_terminal_summary(terminalreporter: object, config: pytest.Config) -> None:
    """Under xdist, the grader runs' wall times (in one process, tests/grader/conftest.py shows them)."""
    if not config.pluginmanager.hasplugin("dsession"):
        return
    shared = config._tmp_path_factory.getbasetemp() / "grader-runs-shared"
    durations = sorted(((p.parent.name, json.loads(p.read_text(encoding="utf-8")).get("duration_s"))
                        for p in shared.glob("*/run.json")), key=lambda item: -(item[1] or 0.0))
    done = [(name, seconds) for name, seconds in durations if seconds is not None]
    if done:
        write = terminalreporter.write_line  # type: ignore[attr-defined]
        terminalreporter.section("grader runs (wall s, two at a time, in one worker)")  # type: ignore[attr-defined]
        write(f"{len(done)} runs, {sum(s for _, s in done):.0f} s in all; slowest: "
              + ", ".join(f"{name} {seconds:.1f}" for name, seconds in done[:12]))


_pgserver = _load_pgserver()
if _pgserver is not None:  # the fixtures pg (the server), pg_url and pg_db (a fresh database per test)
    pg, pg_url, pg_db = _pgserver.pg, _pgserver.pg_url, _pgserver.pg_db


def write_skeleton(folder: Path) -> Path:
    """The student skeleton the solution renders to, as ``folder/document_processor.py``."""
    path = folder / STUDENT_MODULE.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_student(solution_module()), encoding="utf-8")
    return path


@pytest.fixture
def reference_impl() -> Path:
    """The reference solution file."""
    return solution_module()


@pytest.fixture(scope="session")
def skeleton_impl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The student skeleton generated from the solution (never the student's working file)."""
    return write_skeleton(tmp_path_factory.mktemp("skeleton"))


@pytest.fixture
def example_input_path() -> Path:
    """The committed example batch (124 entries)."""
    return example_input()


@pytest.fixture
def repo_root() -> Path:
    return kit_root()
