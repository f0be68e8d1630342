"""A child the kit may have to kill: its resource limits, its own session, its group kill, its death with us.

Why a module of its own: every process the kit starts (a pass's worker, a grader probe, a selfcheck run,
a shard's child) needs the same four things, and they are where Linux and the portable fallbacks differ
(the address-space limit, ``PR_SET_PDEATHSIG``). :mod:`batchlab.host` is the platform's front: which
platforms run at all, the table of every facility and its fallback, and :func:`batchlab.host.capabilities`,
which reports what this module would do here. The platform facts this module needs are decided here, below
the front, so that imports point one way (``host`` imports this module, never the reverse):

* the switch between the Linux facilities and the portable ones (:func:`linux_facilities`, forced off by
  ``BATCHLAB_FORCE_PORTABLE=1``, which is how CI walks the macOS path on Linux);
* ``prctl`` through ctypes, and whether the kernel's die-with-parent request is usable from this thread;
  :mod:`batchlab.lifeline` uses the same two for a worker's link to its parent.

Every name is also importable from :mod:`batchlab.host`, as before this module was split out of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["FORCE_PORTABLE_ENV", "PR_SET_PDEATHSIG", "Limited", "child_limiter", "child_popen_kwargs",
           "environ_snapshot", "kill_group", "libc_prctl", "linux_facilities", "pdeathsig_usable",
           "portable_forced", "rlimit_pairs"]

#: Set to 1 to use the portable fallbacks even on Linux (how CI exercises the macOS path).
FORCE_PORTABLE_ENV = "BATCHLAB_FORCE_PORTABLE"


def portable_forced() -> bool:
    """True when ``BATCHLAB_FORCE_PORTABLE`` asks for the portable fallbacks."""
    return os.environ.get(FORCE_PORTABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def linux_facilities() -> bool:
    """True where the Linux-only facilities are used: on Linux, unless the fallbacks are forced."""
    return sys.platform.startswith("linux") and not portable_forced()


class Limited(Protocol):
    """What :func:`child_popen_kwargs` reads from a limits object (``batchlab.runner.Limits``)."""

    @property
    def cpu_s(self) -> int | None: ...
    @property
    def memory_bytes(self) -> int | None: ...
    @property
    def file_bytes(self) -> int | None: ...
    @property
    def processes(self) -> int | None: ...


def rlimit_pairs(limits: Limited) -> list[tuple[int, int]]:
    """The (resource, value) pairs to set in a child, each clamped to the current hard limit.

    Public because :func:`batchlab.host.capabilities` reports the same pairs: what it says is in force
    is what a child gets.
    """
    try:
        import resource
    except ImportError:  # no POSIX resource limits at all: the wall-clock timeout remains
        return []
    wanted = [(resource.RLIMIT_CPU, limits.cpu_s), (resource.RLIMIT_FSIZE, limits.file_bytes)]
    nproc = getattr(resource, "RLIMIT_NPROC", None)
    if nproc is not None:
        wanted.append((nproc, limits.processes))
    if linux_facilities():
        wanted.insert(1, (resource.RLIMIT_AS, limits.memory_bytes))
    pairs = []
    for res, value in wanted:
        if value is None:
            continue
        hard = resource.getrlimit(res)[1]
        if hard != resource.RLIM_INFINITY and os.geteuid() != 0:
            value = min(value, hard)  # an unprivileged process may lower its hard limit, never raise it
        pairs.append((res, value))
    return pairs


def child_limiter(limits: Limited | None, *, any_thread: bool = False) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets ``limits`` in the child before exec (worked out here, in the parent).

    Where a ``preexec_fn`` runs anyway (limits are set) and ``PR_SET_PDEATHSIG`` is
    usable, it also asks the kernel to SIGKILL the child when its parent dies: a
    grader child running student code never outlives a killed grader. ``any_thread``:
    ask it from a helper thread too, for a caller whose thread outlives every child it
    starts (the grader's task pool, whose threads live as long as the session).
    """
    pairs = rlimit_pairs(limits) if limits is not None else []
    if not pairs:
        return None
    import resource

    usable = pdeathsig_usable() or (any_thread and linux_facilities() and libc_prctl() is not None)
    prctl = libc_prctl() if usable else None
    parent = os.getpid()

    def apply() -> None:  # runs in the forked child: no environment reads, no imports
        for res, value in pairs:
            resource.setrlimit(res, (value, value))
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the request: too late for the kernel
                os.kill(os.getpid(), signal.SIGKILL)

    return apply


def child_popen_kwargs(limits: Limited | None = None, *, any_thread: bool = False) -> dict[str, Any]:
    """``subprocess.Popen`` arguments for a child the kit may kill: its own session, and ``limits``.

    The child leads a new process group, so :func:`kill_group` takes its own
    children (an executor's processes, a grader run) with it. ``any_thread``: see :func:`child_limiter`.
    """
    return {"start_new_session": True, "preexec_fn": child_limiter(limits, any_thread=any_thread)}


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's whole process group; a child already gone is fine."""
    killpg = getattr(os, "killpg", None)
    if killpg is None:
        proc.kill()
        return
    try:
        killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:  # macOS: a group whose members are all zombies answers EPERM
        if proc.poll() is None:
            proc.kill()


def environ_snapshot() -> dict[str, str]:
    """A copy of ``os.environ`` that is safe while other threads change it.

    ``dict(os.environ)`` lists the keys, then reads each one; pytest sets and removes
    ``PYTEST_CURRENT_TEST`` in its main thread while the grader starts children from
    worker threads, so a key could vanish between the two steps (``KeyError``, seen under
    load). Retry until one pass sees a stable mapping; the last resort skips vanished keys.
    """
    for _ in range(100):
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue
    snapshot = {}
    for key in list(os.environ.keys()):
        value = os.environ.get(key)
        if value is not None:
            snapshot[key] = value
    return snapshot


# ---------------------------------------------------------------------------------------------
# A child dies with its parent: the kernel's request (the pipe fallback is batchlab.lifeline's)
# ---------------------------------------------------------------------------------------------

PR_SET_PDEATHSIG = 1
_PRCTL: list[Any] = []


def libc_prctl() -> Any:
    """libc's ``prctl`` through ctypes, or None where there is none (macOS, musl without it, forced fallbacks)."""
    if not _PRCTL:
        func = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                func = ctypes.CDLL(None, use_errno=True).prctl
                func.restype = ctypes.c_int
            except (OSError, AttributeError):
                func = None
        _PRCTL.append(func)
    return _PRCTL[0]


def pdeathsig_usable() -> bool:
    """True where a child started from this thread can ask the kernel to kill it when we die.

    Linux only (and not with the fallbacks forced); and only from the main thread:
    the kernel sends the signal when the *thread* that forked the child exits, so a
    worker started from a short-lived thread would die with that thread.
    """
    return linux_facilities() and libc_prctl() is not None and threading.current_thread() is threading.main_thread()
