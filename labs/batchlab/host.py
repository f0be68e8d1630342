"""Where the kit runs: the one place for every facility that plain, portable Python lacks.

(Named ``host``, not ``platform``: a module called ``platform`` would shadow the
standard library's in every reader's head.)

Supported platforms, and how each is checked:

* **Linux** (what CI runs, as root and as an unprivileged user): every facility below.
* **macOS** (POSIX): the same code; where a facility is Linux-only it has a
  portable fallback. ``BATCHLAB_FORCE_PORTABLE=1`` forces those fallbacks on
  Linux, so CI exercises the macOS path (``tests/batchlab/test_host.py``).
* **Windows**: through WSL2 (a Linux) or the hosted setup (``binder/``, a course's
  JupyterHub). Native Windows lacks the POSIX process model the lab is about
  (SIGKILL, sessions, resource limits): ``batchlab`` and the notebooks' first
  cell stop at once with the unified error ``unsupported_platform``
  (:func:`require_supported_platform`) instead of a traceback in the middle of a run.

The facilities, with their fallback:

=========================  ==========================  ======================================================
facility                   Linux                       portable fallback (macOS, or forced)
=========================  ==========================  ======================================================
CPU-seconds limit          ``setrlimit(RLIMIT_CPU)``   the same (POSIX)
process-count limit        ``setrlimit(RLIMIT_NPROC)`` the same (POSIX); it counts every process and thread of
                                                       the child's user and the kernel exempts root, so it
                                                       bounds a fork storm only for an unprivileged grader
file-size limit            ``setrlimit(RLIMIT_FSIZE)`` the same (POSIX)
address-space limit        ``setrlimit(RLIMIT_AS)``    not set: macOS does not enforce it (and may refuse
                                                       it); the wall-clock timeout and the CPU limit still
                                                       end a runaway child
own session, group kill    ``start_new_session``,      the same (POSIX); where ``killpg`` is refused
                           ``os.killpg``               (macOS answers EPERM for a group of zombies) or
                                                       missing, the child alone is killed
worker dies with parent    ``prctl(PR_SET_PDEATHSIG,   a pipe from the parent: the worker watches its read
                           SIGKILL)``                  end and kills itself at end-of-file (the kernel
                                                       closes the write end when the parent dies, however);
                                                       also used on Linux when the parent starts the worker
                                                       from a thread other than the main one (PDEATHSIG
                                                       fires when the *thread* that forked the child exits)
one worker per run dir     ``fcntl.flock``             the same on macOS (BSD ``flock``); where ``fcntl`` is
                                                       missing, an exclusive-create pid file (a holder whose
                                                       pid is gone is stale and taken over)
=========================  ==========================  ======================================================

Every call of these lives here (:func:`child_popen_kwargs`, :func:`kill_group`), but the run directory's
lock, in :mod:`batchlab.runlock`, which asks :func:`flock_available` and :func:`pid_alive` here first;
a new Linux-only facility (``/proc`` reads, ``prctl``, ``flock``, bubblewrap)
joins this module with a capability check and a fallback before it is used.
``python -m batchlab.host`` prints what is in force on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from .errors import KitError

#: Set to 1 to use the portable fallbacks even on Linux (how CI exercises the macOS path).
FORCE_PORTABLE_ENV = "BATCHLAB_FORCE_PORTABLE"

WINDOWS_HINTS = [
    "Use WSL2 (Windows Subsystem for Linux): in PowerShell run `wsl --install`, open the Ubuntu shell, "
    "clone the kit there and run `pip install -e . && batchlab demo` (README: Platforms).",
    "Or use the hosted setup: open the course's JupyterHub or Binder link, where the kit is installed "
    "(README: Running it for a class).",
]


class UnsupportedPlatformError(KitError):
    """The kit was started where it cannot run (native Windows)."""

    default_code = "unsupported_platform"

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of a traceback: the notebook cell prints the unified error alone."""
        return self.to_json().splitlines()


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


def portable_forced() -> bool:
    """True when ``BATCHLAB_FORCE_PORTABLE`` asks for the portable fallbacks."""
    return os.environ.get(FORCE_PORTABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def native_windows() -> bool:
    return sys.platform == "win32" or os.name == "nt"


def linux_facilities() -> bool:
    """True where the Linux-only facilities are used: on Linux, unless the fallbacks are forced."""
    return sys.platform.startswith("linux") and not portable_forced()


def require_supported_platform() -> None:
    """Stop at once, with the unified error, where the kit cannot run (native Windows)."""
    if native_windows():
        raise UnsupportedPlatformError(
            "batchlab does not run on native Windows: the lab kills and resumes real processes "
            "(SIGKILL, process groups, resource limits), which need Linux or macOS.",
            details={"platform": sys.platform, "os_name": os.name,
                     "python": ".".join(map(str, sys.version_info[:3]))},
            hints=list(WINDOWS_HINTS),
        )


def _rlimits(limits: Limited) -> list[tuple[int, int]]:
    """The (resource, value) pairs to set in a child, each clamped to the current hard limit."""
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
    pairs = _rlimits(limits) if limits is not None else []
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


# ---------------------------------------------------------------------------------------------
# A worker dies with its parent
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


# ---------------------------------------------------------------------------------------------
# One worker per run directory: the facilities the lock (batchlab.runlock) asks about
# ---------------------------------------------------------------------------------------------


def flock_available() -> bool:
    try:
        import fcntl
    except ImportError:
        return False
    return hasattr(fcntl, "flock")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs code. A zombie counts as gone: it holds no lock and does nothing more
    (its parent has not reaped it yet), which is what the lock's holder check and chaos's kill wait both need."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")  # Linux; elsewhere a zombie counts as alive until reaped
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False
    return True


@dataclass(frozen=True)
class Capabilities:
    """What is in force on this machine (``python -m batchlab.host``)."""

    platform: str
    supported: bool
    portable_forced: bool
    linux_facilities: bool
    rlimits: tuple[str, ...]
    process_groups: bool
    parent_death: str
    run_dir_lock: str


def capabilities() -> Capabilities:
    names = {}
    try:
        import resource

        names = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "address_space", resource.RLIMIT_FSIZE: "file_size",
                 resource.RLIMIT_NPROC: "processes"}
    except ImportError:
        pass
    probe = SimpleNamespace(cpu_s=1, memory_bytes=1, file_bytes=1, processes=1)  # every limit asked for: which are set?
    return Capabilities(
        platform=sys.platform, supported=not native_windows(), portable_forced=portable_forced(),
        linux_facilities=linux_facilities(),
        rlimits=tuple(names[res] for res, _ in (_rlimits(probe) if names else [])),
        process_groups=hasattr(os, "killpg") and hasattr(os, "setsid"),
        parent_death="pdeathsig" if pdeathsig_usable() else "pipe",
        run_dir_lock="flock" if flock_available() else "pidfile",
    )


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


if __name__ == "__main__":
    try:
        require_supported_platform()
    except UnsupportedPlatformError as exc:
        print(exc.to_json())
        sys.exit(2)
    print(json.dumps(asdict(capabilities()), indent=2))

