"""Where the kit's files are, found from this package (an editable install of the repository)."""

from __future__ import annotations

import os
from pathlib import Path

STUDENT_MODULE = Path("labs/student/lab03/src/services/document_processor.py")
SOLUTION_MODULE = Path("labs/solution/lab03/src/services/document_processor.py")
EXAMPLE_INPUT = Path("examples/input_example.json")


def kit_root() -> Path:
    """The repository root: ``BATCHLAB_ROOT`` if set, else the folder above ``labs/``."""
    env = os.environ.get("BATCHLAB_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def student_module() -> Path:
    return kit_root() / STUDENT_MODULE


def solution_module() -> Path:
    return kit_root() / SOLUTION_MODULE


def example_input() -> Path:
    return kit_root() / EXAMPLE_INPUT


def default_impl() -> Path:
    """The implementation the kit runs by default: ``BATCHLAB_IMPL``, else the student module."""
    env = os.environ.get("BATCHLAB_IMPL")
    return Path(env).resolve() if env else student_module()


def default_demo_impl() -> Path:
    """The reference where the kit has it (teachers' copy), else the student module (students' copy).

    Here, not in the demo, because the CLI's ``run``, the demo and the dashboard all default to it.
    """
    sol = solution_module()
    return sol if sol.exists() else student_module()
