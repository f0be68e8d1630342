"""Where the kit runs: the platform checks, and the map of every facility that plain, portable Python lacks.

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

Every call of these lives here or, for the processes the kit starts, in :mod:`batchlab.childproc`
(:func:`child_popen_kwargs`, :func:`kill_group`, the die-with-parent request, the Linux-or-fallback switch),
which this module imports and re-exports: its names are importable from here too. The run directory's lock,
in :mod:`batchlab.runlock`, asks :func:`flock_available` and :func:`pid_alive` here first;
a new Linux-only facility (``/proc`` reads, ``prctl``, ``flock``, bubblewrap)
joins this module (or ``childproc``, if it concerns a child) with a capability check and a fallback before it
is used. ``python -m batchlab.host`` prints what is in force on this machine.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

from .childproc import (
    FORCE_PORTABLE_ENV,
    PR_SET_PDEATHSIG,
    Limited,
    child_limiter,
    child_popen_kwargs,
    environ_snapshot,
    kill_group,
    libc_prctl,
    linux_facilities,
    pdeathsig_usable,
    portable_forced,
    rlimit_pairs,
)
from .errors import KitError

__all__ = [
    # the platform, here
    "WINDOWS_HINTS", "Capabilities", "UnsupportedPlatformError", "capabilities", "flock_available",
    "native_windows", "pid_alive", "require_supported_platform",
    # the kit's children, from batchlab.childproc (importable from here as before the split)
    "FORCE_PORTABLE_ENV", "PR_SET_PDEATHSIG", "Limited", "child_limiter", "child_popen_kwargs", "environ_snapshot",
    "kill_group", "libc_prctl", "linux_facilities", "pdeathsig_usable", "portable_forced",
]

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


def native_windows() -> bool:
    return sys.platform == "win32" or os.name == "nt"


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
    """What is in force here, each field asked of the function the kit itself uses (so it cannot disagree)."""
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
        rlimits=tuple(names[res] for res, _ in (rlimit_pairs(probe) if names else [])),
        process_groups=hasattr(os, "killpg") and hasattr(os, "setsid"),
        parent_death="pdeathsig" if pdeathsig_usable() else "pipe",
        run_dir_lock="flock" if flock_available() else "pidfile",
    )


if __name__ == "__main__":
    try:
        require_supported_platform()
    except UnsupportedPlatformError as exc:
        print(exc.to_json())
        sys.exit(2)
    print(json.dumps(asdict(capabilities()), indent=2))

