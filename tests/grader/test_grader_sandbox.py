"""Student code runs in a child that cannot stop the grader: exits, hangs and floods end as clear verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.sandbox import run_probe

#: The probe child runs in bubblewrap, which an unprivileged user starts through user namespaces.
pytestmark = pytest.mark.student_env


def _impl(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "document_processor.py"
    path.write_text(source, encoding="utf-8")
    return path


def test_sys_exit_at_import_is_an_import_error(tmp_path: Path) -> None:
    """sys.exit() while importing is caught and reported as the module failing to import."""
    verdict = run_probe(_impl(tmp_path, "import sys\nsys.exit(3)\n"), "import", {}, workdir=tmp_path / "w",
                        timeout_s=30)
    assert verdict.status == "import_error"
    assert "failed to import: SystemExit" in verdict.failure("the module")


def test_os_exit_is_reported_as_ending_the_process(tmp_path: Path) -> None:
    """os._exit() leaves no verdict; the grader says the process exited before answering."""
    verdict = run_probe(_impl(tmp_path, "import os\nos._exit(7)\n"), "import", {}, workdir=tmp_path / "w",
                        timeout_s=30)
    assert verdict.status == "died" and verdict.returncode == 7
    assert "exited with code 7 before answering" in verdict.failure("the module")


def test_a_hang_is_killed_at_the_timeout(tmp_path: Path) -> None:
    """An endless loop is killed when the timeout expires and reported as a hang."""
    verdict = run_probe(_impl(tmp_path, "while True:\n    pass\n"), "import", {}, workdir=tmp_path / "w",
                        timeout_s=1.5)
    assert verdict.status == "timeout"
    assert "a hang or an endless loop" in verdict.failure("the module")


def test_output_flood_is_capped(tmp_path: Path) -> None:
    """A module that prints megabytes is read back capped, with the cut said."""
    verdict = run_probe(_impl(tmp_path, "print('x' * 2_000_000)\n"), "import", {}, workdir=tmp_path / "w",
                        timeout_s=30)
    assert verdict.ok
    assert len(verdict.stdout) < 20_000 and "earlier bytes cut" in verdict.stdout
