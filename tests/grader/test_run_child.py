"""The grader tests' spawn helper retries a spawn the kernel refused for a transient reason, and nothing else."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from grader_runs import run_child


def test_a_transiently_refused_spawn_is_retried_and_the_child_runs_once(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """EFAULT from Popen (nothing executed) is retried; the child then runs exactly once."""
    real_run = subprocess.run
    refusals = [OSError(errno.EFAULT, "Bad address")]
    marker = tmp_path / "ran"

    def flaky_run(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real_run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", flaky_run)
    slept: list[float] = []
    done = run_child([sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"], cwd=tmp_path, timeout=60,
                     sleep=slept.append)
    assert done.returncode == 0
    assert marker.read_text() == "x"
    assert slept == [0.5]


def test_a_missing_program_is_not_retried(tmp_path: Path) -> None:
    """ENOENT says the command is wrong: it is raised at once, not retried."""
    slept: list[float] = []
    with pytest.raises(FileNotFoundError):
        run_child([str(tmp_path / "no-such-program")], cwd=tmp_path, timeout=60, sleep=slept.append)
    assert slept == []


def test_a_child_that_fails_is_returned_as_it_is(tmp_path: Path) -> None:
    """A child that ran and failed is never rerun: its exit code and output come back."""
    slept: list[float] = []
    done = run_child([sys.executable, "-c", "import sys; print('once'); sys.exit(3)"], cwd=tmp_path, timeout=60,
                     sleep=slept.append)
    assert (done.returncode, done.stdout, slept) == (3, "once\n", [])
