"""The grading children of ``grade-all``: one ``batchlab grade --exec`` per submission, watched from one thread.

Why one thread and no pool: the kernel's die-with-parent signal (``PR_SET_PDEATHSIG``) fires when the
*thread* that started a child exits, so children are started from the main thread only, and a killed
``grade-all`` takes every grading child with it (their probes die with them the same way). Each child
leads its own session; on the per-submission timeout the child and everything below it (found with
psutil, then the process group) is SIGKILLed, so a hang costs that submission alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..childproc import child_popen_kwargs, kill_group

#: The grading child writes results, feedback and run folders: generous, but not a full disk.
CHILD_FILE_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class _ChildLimits:
    """Limits of a grading child (``batchlab.host.Limited``): only a file size, which also turns on
    die-with-parent (the grader sets its own, tighter limits on the children that run student code)."""

    cpu_s: int | None = None
    memory_bytes: int | None = None
    file_bytes: int | None = CHILD_FILE_BYTES
    processes: int | None = None  # the grader's process-count limit is for the children that run student code


def grade_verb(impl: Path, results: Path, *, hidden: bool, grader_options: Sequence[str] = ()) -> list[str]:
    """``python -m batchlab grade --exec --impl IMPL --results RESULTS [--hidden] [-- OPTIONS]``.

    The verb, not the grader's own command line: that one is built by ``batchlab grade``
    (``teach.grading.grader_command``), which a room may not import.
    """
    cmd = [sys.executable, "-m", "batchlab", "grade", "--exec", "--impl", str(impl), "--results", str(results)]
    if hidden:
        cmd.append("--hidden")
    if grader_options:
        cmd += ["--", *grader_options]
    return cmd


@dataclass
class Child:
    """One running grading child: its process, where its output goes and when it must end."""

    student: str
    proc: subprocess.Popen[bytes]
    started: float
    deadline: float
    log: Path
    timed_out: bool = False

    def poll(self, now: float) -> int | None:
        """The exit code once the child is gone; past the deadline it is killed first."""
        code = self.proc.poll()
        if code is None and now >= self.deadline:
            self.timed_out = True
            kill_tree(self.proc)
            code = self.proc.wait()
        return code


def start(student: str, cmd: list[str], *, cwd: Path, timeout_s: float) -> Child:
    """Start a grading child with its output in ``cwd/grader-output.txt`` (a file: no pipe can fill up)."""
    log = cwd / "grader-output.txt"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, **child_popen_kwargs(_ChildLimits()))
    now = time.monotonic()
    return Child(student, proc, now, now + timeout_s, log)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``, every descendant psutil still sees (other sessions included) and its group."""
    try:
        import psutil

        below = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # noqa: BLE001 - psutil missing or the process already gone: the group kill remains
        below = []
    kill_group(proc)
    for child in below:
        try:
            child.kill()
        except Exception:  # noqa: BLE001,S112 - already gone
            continue
