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
file-size limit            ``setrlimit(RLIMIT_FSIZE)`` the same (POSIX)
address-space limit        ``setrlimit(RLIMIT_AS)``    not set: macOS does not enforce it (and may refuse
                                                       it); the wall-clock timeout and the CPU limit still
                                                       end a runaway child
own session, group kill    ``start_new_session``,      the same (POSIX); where ``killpg`` is refused
                           ``os.killpg``               (macOS answers EPERM for a group of zombies) or
                                                       missing, the child alone is killed
=========================  ==========================  ======================================================

Every call of these lives here (:func:`child_popen_kwargs`, :func:`kill_group`);
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
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

    cpu_s: int | None
    memory_bytes: int | None
    file_bytes: int | None


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


def child_limiter(limits: Limited | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that sets ``limits`` in the child before exec (worked out here, in the parent)."""
    pairs = _rlimits(limits) if limits is not None else []
    if not pairs:
        return None
    import resource

    def apply() -> None:  # runs in the forked child: no environment reads, no imports
        for res, value in pairs:
            resource.setrlimit(res, (value, value))

    return apply


def child_popen_kwargs(limits: Limited | None = None) -> dict[str, Any]:
    """``subprocess.Popen`` arguments for a child the kit may kill: its own session, and ``limits``.

    The child leads a new process group, so :func:`kill_group` takes its own
    children (an executor's processes, a grader run) with it.
    """
    return {"start_new_session": True, "preexec_fn": child_limiter(limits)}


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


@dataclass(frozen=True)
class Capabilities:
    """What is in force on this machine (``python -m batchlab.host``)."""

    platform: str
    supported: bool
    portable_forced: bool
    linux_facilities: bool
    rlimits: tuple[str, ...]
    process_groups: bool


def capabilities() -> Capabilities:
    names = {}
    try:
        import resource

        names = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "address_space", resource.RLIMIT_FSIZE: "file_size"}
    except ImportError:
        pass
    probe = SimpleNamespace(cpu_s=1, memory_bytes=1, file_bytes=1)  # every limit asked for: which are set?
    return Capabilities(
        platform=sys.platform, supported=not native_windows(), portable_forced=portable_forced(),
        linux_facilities=linux_facilities(),
        rlimits=tuple(names[res] for res, _ in (_rlimits(probe) if names else [])),
        process_groups=hasattr(os, "killpg") and hasattr(os, "setsid"),
    )


if __name__ == "__main__":
    try:
        require_supported_platform()
    except UnsupportedPlatformError as exc:
        print(exc.to_json())
        sys.exit(2)
    print(json.dumps(asdict(capabilities()), indent=2))
