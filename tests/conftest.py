"""Fixtures shared by the kit's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchlab.paths import example_input, kit_root, solution_module, student_module


@pytest.fixture
def reference_impl() -> Path:
    """The reference solution file."""
    return solution_module()


@pytest.fixture
def skeleton_impl() -> Path:
    """The generated student skeleton file."""
    return student_module()


@pytest.fixture
def example_input_path() -> Path:
    """The committed example batch (124 entries)."""
    return example_input()


@pytest.fixture
def repo_root() -> Path:
    return kit_root()
