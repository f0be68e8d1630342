"""Fixtures shared by the kit's own tests.

No test reads or writes the student's working module
(``labs/student/lab03/src/services/document_processor.py``): a student runs this
suite in the middle of their work. Tests that need the skeleton get the one the
solution renders to, written into a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab.paths import STUDENT_MODULE, example_input, kit_root, solution_module
from batchlab.teach.release import render_student


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
