"""Nothing left behind: orphans of student code come back to the grader, which ends them before writing results.

Apart from :mod:`grader.sandbox` because it is a different job on a different object: the sandbox
starts one child and judges it; this module looks after every process of the grader's session at
once, through Linux's ``/proc`` and ``prctl``: the grader adopts its descendants' orphans
(:func:`adopt_orphans`), reaps the sandboxes' zombies (:func:`reap_adopted`), waits for a killed
group to be gone (:func:`wait_group_gone`) and, before ``results.json`` is written, SIGKILLs
whatever is left (:func:`sweep_children`). It knows nothing of probes, verdicts or bubblewrap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux ``PR_SET_CHILD_SUBREAPER``).

    A child that double-forks and calls ``setsid`` escapes its process group, so the group kill misses it;
    but its orphan is re-parented to the nearest subreaper instead of init, and :func:`sweep_children`
    finds it. Inside bubblewrap the PID namespace already ends them; this is the fallback's guarantee.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    """Whether this process adopts its descendants' orphans (``PR_GET_CHILD_SUBREAPER``): only then can a zombie
    child be a sandbox's orphan rather than a child some ``Popen`` (a test's grader run) is about to wait for."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        flag = ctypes.c_int(0)
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)) == 0 and flag.value != 0
    except (OSError, AttributeError):
        return False


def _children() -> list[tuple[int, str]]:
    """(pid, state) of this process's children."""
    return [(pid, state) for pid, state, _ in _children_named()]


def reap_adopted(sandboxed: bool) -> None:
    """Reap the sandboxes' own processes that ended here: bwrap's first process inside the PID namespace
    (and what it had started) outlives the outer bwrap by a moment and, orphaned, comes back to this
    subreaper as a zombie. With the sandbox on (``sandboxed``: the session's sandbox is active), the grader's
    own children are always the ``sh`` in front of ``bwrap``, so reaping every other zombie child robs no
    ``Popen``; with it off nothing is reaped."""
    if not sys.platform.startswith("linux") or not sandboxed or not is_subreaper():
        return  # not a subreaper: no orphan comes back here, and every zombie child is some Popen's to reap
    for pid, state, name in _children_named():
        if state == "Z" and name != "sh":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _children_named() -> list[tuple[int, str, str]]:
    return [(pid, state, name) for pid, state, name in _processes() if _ppid_of(pid) == os.getpid()]


def _ppid_of(pid: int) -> int:
    try:
        return int((Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())[1])
    except (OSError, ValueError, IndexError):
        return -1


def _processes(pgrp: int | None = None) -> list[tuple[int, str, str]]:
    """(pid, state, command) of every process (``pgrp``: of that process group only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
            fields = tail.split()
        except (OSError, ValueError):
            continue
        if pgrp is None or int(fields[2]) == pgrp:
            found.append((int(entry.name), fields[0], head.split("(", 1)[-1]))
    return found


def wait_group_gone(pgrp: int, timeout_s: float = 5.0) -> None:
    """Wait until no process of group ``pgrp`` runs (zombies aside): after a group kill, a sandboxed child may
    take a moment longer than the shell in front of it that ``wait()`` saw end."""
    if not Path("/proc/self/stat").exists():
        return
    deadline = time.monotonic() + timeout_s
    while any(state != "Z" for _, state, _ in _processes(pgrp)) and time.monotonic() < deadline:
        time.sleep(0.005)


def sweep_children(rounds: int = 50) -> int:
    """SIGKILL and reap every child of this process still there; returns how many were alive.

    Call it only when no child of the grader should run (the end of a session): each killed
    process's own children come back here in turn, so it repeats until none is left.
    """
    alive = 0
    for _ in range(rounds):
        children = _children() if Path("/proc/self/stat").exists() else []
        if not children:
            break
        for pid, state in children:
            alive += state != "Z"
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid, _state in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return alive
