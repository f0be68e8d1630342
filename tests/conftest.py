"""Fixtures shared by the kit's own tests.

No test reads or writes the student's working module
(``labs/student/lab03/src/services/document_processor.py``): a student runs this
suite in the middle of their work. Tests that need the skeleton get the one the
solution renders to, written into a temporary folder.
"""

from __future__ import annotations

import importlib.util
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
