"""Bubblewrap around every child that runs student code: what it can see, write, reach and leave behind.

A submission is untrusted code run with the grader's own permissions. Without a
boundary it can rewrite the kit (the grader, the thresholds) for the next
submission, read the hidden scenarios, kill the grader or leave processes behind
(``/work/shared/notes/grading-safety.md`` measured each). On Linux with
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``) each child
(a probe or a scenario's worker) starts as::

    sh -c 'bwrap "$@"; <re-raise the child's signal>' sh \\
        --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /dev/shm --tmpfs /run \\
        --unshare-pid --unshare-net --unshare-ipc --unshare-uts --die-with-parent \\
        --tmpfs <each hidden folder> ... --ro-bind <the files it needs> ... --bind <its own work dir> \\
        --remount-ro <each hidden folder> --chdir <work dir> -- python ...

so it sees the filesystem read-only except its own fresh work directory and a
private, size-capped ``/tmp``; has no network and no other service's socket (``/run`` is emptied); lives in its own PID namespace
(every process it starts dies with the namespace's first process, which dies with
the child's parent or the grader's group kill); and cannot see the *hidden*
folders: the grader (hidden scenarios included; only its probe files are shown
again), the results folder (earlier results, other children's work), the
reference solution, the kit's git history and the submission's own folder (other
submissions beside it). The resource limits (:data:`grader.sandbox.LIMITS`, with a
process count) still apply.

No ``--new-session``: the sandboxed child stays in the process group the grader kills, so the
grader's SIGKILL reaches it at once, as without a sandbox. In a session of its own it died only
after the shell, the outer ``bwrap`` and the namespace's first process had, a few milliseconds
the grader did not wait for: a probe killed mid-write kept writing its checkpoint after the
grader read it (seen as "impossible states" in the kill test). The session's purpose, a child
that cannot push keystrokes into a terminal, does not apply: grader children have no terminal
(their group leader already called ``setsid``). A process that leaves the group (``setsid``)
still dies with the namespace.

``bwrap`` reports a child killed by signal N as exit status 128+N; the ``sh`` in
front turns that back into a death by the same signal, so the runner and the probe
see ``-9`` for a SIGKILL exactly as without the sandbox (a child that itself exits
with 137 looks killed: it gains nothing by it).

Where ``bwrap`` is missing or cannot start (no user namespaces, a container's
seccomp profile), :func:`detect` says why, once, and the grader falls back to the
limits alone: the score table and ``results.json`` (``extra_data.sandbox``) say so.
``BATCHLAB_SANDBOX=off`` (or ``--no-sandbox``) turns it off for debugging.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from batchlab.childproc import FORCE_PORTABLE_ENV, portable_forced

#: ``off`` turns the sandbox off (debugging); anything else (or unset) uses it where it works.
SANDBOX_ENV = "BATCHLAB_SANDBOX"
#: Size caps of the child's private ``/tmp`` and ``/dev/shm`` (memory-backed: a flood there costs RAM, not disk).
TMP_BYTES = 256 * 2**20
SHM_BYTES = 64 * 2**20
KIND_BWRAP = "bubblewrap"
KIND_NONE = "none"

BASE_FLAGS: tuple[str, ...] = (
    "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
    "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
    "--die-with-parent",
    "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",
    # /run holds other services' sockets (a database's, D-Bus): a read-only mount still lets a client connect to a
    # socket, so the folder is replaced by an empty read-only one. /dev itself is made read-only (no flood there).
    "--tmpfs", "/run", "--remount-ro", "/run", "--remount-ro", "/dev",
)
#: Re-raise the signal that killed the sandboxed child (bwrap exits 128+N) on the shell itself.
_SHIM = 'bwrap_bin=$1; shift; "$bwrap_bin" "$@"; rc=$?; ' \
        'if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then kill -$((rc - 128)) $$; fi; exit "$rc"'


@dataclass(frozen=True)
class Sandbox:
    """The isolation in force for this grading session, and how to wrap a child's command in it."""

    kind: str  #: ``bubblewrap`` or ``none``
    reason: str  #: what is in force, or why there is no sandbox
    bwrap: str | None = None
    hidden: tuple[Path, ...] = ()  #: folders no child can see (an empty read-only tmpfs over each)
    shown: tuple[Path, ...] = ()  #: files inside hidden folders shown again, read-only (the probe's own files)

    @property
    def active(self) -> bool:
        return self.kind == KIND_BWRAP and self.bwrap is not None

    def info(self) -> dict[str, Any]:
        """``results.json``'s ``extra_data.sandbox``."""
        data: dict[str, Any] = {"kind": self.kind, "reason": self.reason, "records": self.records()}
        if self.active:
            data["hidden"] = [str(p) for p in self.hidden]
        return data

    def records(self) -> str:
        """What keeps a scenario's ledger and sink honest under this sandbox (``batchlab.harness``)."""
        if self.active:
            return ("written by the harness side only: the worker's view of its run directory holds its spec, its "
                    "lock and its state folder, not the ledger or the sink")
        return ("written by the harness side, but the worker runs as the same user and can open the files: a write "
                "beside the harness is detected after each pass (the scenario is not scored), not prevented")

    def banner(self) -> str:
        """The score table's first line."""
        if self.active:
            return f"sandbox: bubblewrap ({self.reason})"
        return (f"sandbox: NONE ({self.reason}); student code ran with the grader's permissions and only the "
                "resource limits: it could change the kit or kill the grader")

    def hiding(self, hidden: Iterable[Path] = (), shown: Iterable[Path] = ()) -> Sandbox:
        """This sandbox with more hidden folders and shown files."""
        return replace(self, hidden=_unique([*self.hidden, *hidden]), shown=_unique([*self.shown, *shown]))

    def command(self, cmd: Sequence[str], *, writable: Sequence[Path], readable: Sequence[Path] = ()) -> list[str]:
        """``cmd`` run in the sandbox: ``writable`` folders read-write, ``readable`` paths shown read-only."""
        if not self.active:
            return list(cmd)
        assert self.bwrap is not None
        args = ["/bin/sh", "-c", _SHIM, "sh", self.bwrap, *BASE_FLAGS]
        for path in _runtime_under_tmp():
            args += ["--ro-bind", str(path), str(path)]
        hidden = [p for p in sorted(self.hidden, key=lambda p: len(p.parts)) if p.is_dir()]
        for path in hidden:
            args += ["--tmpfs", str(path)]
        for path in _unique([*self.shown, *readable]):
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        for path in writable:
            args += ["--bind", str(path), str(path)]
        for path in hidden:
            args += ["--remount-ro", str(path)]
        args += ["--chdir", str(writable[0]) if writable else "/", "--", *cmd]
        return args


def _unique(paths: Iterable[Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for p in paths:
        resolved = Path(p).resolve()
        if resolved not in out:
            out.append(resolved)
    return tuple(out)


@functools.cache
def _runtime_under_tmp() -> tuple[Path, ...]:
    """The interpreter, its packages and the harness where they live under ``/tmp`` (a test's throwaway
    environment): the child's private ``/tmp`` would hide them, so they are shown again, read-only."""
    import batchlab

    candidates = [Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent,
                  Path(batchlab.__file__).resolve().parents[1], *(Path(p) for p in sys.path if p)]
    tmp = Path("/tmp")
    found = sorted({p.resolve() for p in candidates if p.is_dir() and p.resolve().is_relative_to(tmp)
                    and p.resolve() != tmp}, key=lambda p: len(p.parts))
    return tuple(p for i, p in enumerate(found) if not any(p.is_relative_to(q) for q in found[:i]))


def turned_off() -> bool:
    return os.environ.get(SANDBOX_ENV, "").strip().lower() in ("off", "0", "false", "no", "none")


@functools.cache
def detect(off: bool = False) -> Sandbox:
    """Whether bubblewrap works here (one real ``bwrap ... true``, cached), or why not."""
    if off or turned_off():
        return Sandbox(KIND_NONE, f"turned off (--no-sandbox or {SANDBOX_ENV}=off)")
    if not sys.platform.startswith("linux"):
        return Sandbox(KIND_NONE, f"bubblewrap needs Linux (this is {sys.platform})")
    if portable_forced():
        return Sandbox(KIND_NONE, f"the portable fallbacks are forced ({FORCE_PORTABLE_ENV}=1): as on macOS")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Sandbox(KIND_NONE, "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    true = shutil.which("true") or "/bin/true"
    try:
        proc = subprocess.run([bwrap, *BASE_FLAGS, "--", true], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Sandbox(KIND_NONE, f"bubblewrap could not start: {exc}")
    if proc.returncode != 0:
        said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return Sandbox(KIND_NONE, f"bubblewrap cannot run here ({said[-1] if said else f'exit {proc.returncode}'}; "
                                  "user namespaces off, or a container that forbids them?)")
    uid = os.geteuid()
    who = "as root: no process-count limit (the kernel exempts uid 0), the PID namespace ends every process" \
        if uid == 0 else f"as uid {uid}, with the process-count limit"
    return Sandbox(KIND_BWRAP, f"bwrap {bwrap}, {who}", bwrap=bwrap)


def git_dirs(root: Path) -> list[Path]:
    """The git folders of a checkout (a worktree's ``.git`` is a file naming the shared one): its whole history."""
    dot = root / ".git"
    if dot.is_dir():
        return [dot]
    if dot.is_file():
        text = dot.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            gitdir = (root / text.split(":", 1)[1].strip()).resolve()
            common = gitdir.parent.parent if gitdir.parent.name == "worktrees" else gitdir
            return [common]
    return []


def needed_by_child() -> list[Path]:
    """What a child must see: hiding a folder that holds one of these would break it."""
    import batchlab

    return [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
            Path(os.path.realpath(sys.executable)).parent, Path(batchlab.__file__).resolve().parent]


def submission_folder(impl: Path, *, keep: Sequence[Path]) -> Path | None:
    """The submission's folder, to hide (other submissions beside it), unless a child needs what it holds."""
    folder = impl.resolve().parent
    if folder == Path(folder.anchor) or any(p.is_relative_to(folder) for p in [*needed_by_child(), *keep]):
        return None
    return folder
