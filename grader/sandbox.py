"""Run student code in child processes that cannot stop or corrupt the grader's own run.

Every piece of student code, step checks included, runs in a child process
(:mod:`grader.probe`, or the harness's worker for two-pass scenarios) with:

* bubblewrap where it works (:mod:`grader.bubblewrap`: a read-only filesystem but for its
  own work directory, no network, its own PID namespace, no view of ``grader/``, the
  results or other submissions), chosen once per session (:func:`use_sandbox`);
* a wall-clock timeout (the child's whole process group is SIGKILLed);
* resource limits (:data:`LIMITS`: CPU seconds, address space, file size, process
  count), so an endless loop, a memory blow-up, a flood of output or a fork storm ends
  the child, not the grader;
* stdout/stderr captured to files and read back capped;
* its own working directory.

What comes back is a :class:`Verdict`; :meth:`Verdict.failure` turns every way a
child can go wrong into one sentence for the student.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.host import child_popen_kwargs, environ_snapshot, kill_group
from batchlab.runner import Limits

from .bubblewrap import Sandbox, detect

GRADER_DIR = Path(__file__).resolve().parent
PROBE = GRADER_DIR / "probe.py"

#: Limits of every child that runs student code (probes and scenario workers). ``processes`` counts every
#: process and thread of the grader's user (the grader's own included), so it is far above what a worker needs.
LIMITS = Limits(cpu_s=60, memory_bytes=2 * 1024**3, file_bytes=64 * 1024**2, processes=512)


def probe_files() -> list[Path]:
    """What a probe child needs of ``grader/``: every ``probe*`` entry (keep the probe's modules so named);
    the rest of the folder (tests, hidden scenarios) stays hidden from it."""
    return sorted(p for p in GRADER_DIR.glob("probe*") if p.suffix != ".pyc")


_ACTIVE: list[Sandbox] = []


def use_sandbox(sandbox: Sandbox | None) -> None:
    """Make ``sandbox`` the one every child of this process starts in (the conftest, once per session)."""
    _ACTIVE[:] = [] if sandbox is None else [sandbox]


def current_sandbox() -> Sandbox:
    """The session's sandbox; outside a grader session, bubblewrap where it works, hiding ``grader/``."""
    if not _ACTIVE:
        _ACTIVE.append(detect().hiding(hidden=[GRADER_DIR], shown=probe_files()))
    return _ACTIVE[0]
#: How much of a child's stdout/stderr is read back.
OUTPUT_CAP = 16_000

TODO_RE = re.compile(r"TODO step (\d\d)[^'\"\n]*")


@dataclass
class Verdict:
    """The outcome of one probe child."""

    check: str
    status: str  # ok | todo | student_error | import_error | grader_error | timeout | died
    data: Any = None
    error: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_grader_error(self) -> bool:
        return self.status == "grader_error"

    def failure(self, what: str) -> str:
        """One sentence: why ``what`` (e.g. "the checkpoint round trip") could not be checked."""
        return describe_failure(what, self.status, self.error, self.returncode, self.stderr, self.duration_s)


def describe_failure(what: str, status: str, error: dict[str, Any] | None, returncode: int | None,
                     stderr: str, duration_s: float) -> str:
    error = error or {}
    message = f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
    if status == "todo":
        todo = TODO_RE.search(error.get("message", "")) or TODO_RE.search(stderr)
        return f"{what}: not implemented yet ({todo.group(0) if todo else message})"
    if status == "import_error":
        return f"{what}: the module failed to import: {message}\n{_tail(error.get('traceback', ''))}"
    if status == "student_error":
        return f"{what}: your code raised {message}\n{_tail(error.get('traceback', ''))}"
    if status == "timeout":
        return (f"{what}: no answer within {duration_s:.0f} s (a hang or an endless loop?); "
                "the child process was killed")
    if status == "died":
        return f"{what}: {death_reason(returncode)}\n{_tail(stderr)}"
    if status == "grader_error":
        return f"{what}: GRADER ERROR (not your fault): {message}\n{error.get('traceback', '')[-1500:]}"
    return f"{what}: {status}"


def death_reason(returncode: int | None) -> str:
    """Why a child ended without an answer, in the student's terms."""
    if returncode is None:
        return "the process did not end"
    if returncode < 0:
        sig = -returncode
        reasons: dict[int, str] = {
            signal.SIGXCPU: f"CPU time limit of {LIMITS.cpu_s} s exceeded (an endless loop?)",
            signal.SIGXFSZ: f"file size limit of {(LIMITS.file_bytes or 0) // 2**20} MB exceeded "
                            "(a flood of output?)",
            signal.SIGKILL: "killed (memory limit exceeded?)",
            signal.SIGSEGV: "crashed with a segmentation fault",
        }
        return "the process " + reasons.get(sig, f"was killed by signal {signal.Signals(sig).name}")
    return (f"the process exited with code {returncode} before answering "
            "(sys.exit or os._exit in your code?)")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _read_capped(path: Path, cap: int = OUTPUT_CAP) -> str:
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > cap:
                fh.seek(size - cap)
            data = fh.read(cap)
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return (f"[... {size - cap} earlier bytes cut]\n" + text) if size > cap else text


def sandbox_failed(stderr: str) -> bool:
    """Whether a child's error output is bubblewrap's refusal to set the sandbox up (a grader error, never the
    student's: the student's code had not started)."""
    return current_sandbox().active and stderr.lstrip().startswith("bwrap: ")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**environ_snapshot(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(extra or {})
    return env


@dataclass
class ProbeProcess:
    """A started probe child (used directly when the parent must kill it at a chosen moment)."""

    check: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    verdict_path: Path
    started: float

    def kill(self) -> None:
        """SIGKILL the child's group and return once none of its processes runs any more (the sandbox's too)."""
        kill_group(self.proc)
        self.proc.wait()
        wait_group_gone(self.proc.pid)

    def finish(self, timeout_s: float) -> Verdict:
        """Wait for the child (killing it after ``timeout_s``) and read its verdict."""
        timed_out = False
        try:
            self.proc.wait(timeout=max(timeout_s - (time.monotonic() - self.started), 0.01))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        duration = time.monotonic() - self.started
        reap_adopted()
        stdout = _read_capped(self.workdir / f"{self.verdict_path.stem}.stdout")
        stderr = _read_capped(self.workdir / f"{self.verdict_path.stem}.stderr")
        if self.verdict_path.exists():
            raw = json.loads(self.verdict_path.read_text(encoding="utf-8"))
            return Verdict(check=self.check, status=raw["status"], data=raw.get("data"),
                           error=raw.get("error") or {}, returncode=self.proc.returncode, duration_s=duration,
                           stdout=stdout, stderr=stderr)
        status = "timeout" if timed_out else "died"
        if not timed_out and sandbox_failed(stderr):
            return Verdict(check=self.check, status="grader_error", returncode=self.proc.returncode,
                           duration_s=duration, stdout=stdout, stderr=stderr,
                           error={"type": "SandboxError", "message": stderr.strip()[:800]})
        return Verdict(check=self.check, status=status, returncode=self.proc.returncode, duration_s=duration,
                       stdout=stdout, stderr=stderr)


def start_probe(impl: Path, check: str, args: dict[str, Any], *, workdir: Path,
                env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> ProbeProcess:
    """Start ``probe.py IMPL CHECK`` in ``workdir`` with :data:`LIMITS`, in the session's sandbox.

    ``pass_fds``: descriptors the child inherits (a step harness's socket, :mod:`grader.stepharness`);
    they cross bubblewrap as the scenario workers' do.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tag = f"{check}-{uuid.uuid4().hex[:8]}"
    args_path = workdir / f"{tag}.args.json"
    verdict_path = workdir / f"{tag}.verdict.json"
    args_path.write_text(json.dumps(args, ensure_ascii=False), encoding="utf-8")
    stdout = (workdir / f"{tag}.verdict.stdout").open("wb")
    stderr = (workdir / f"{tag}.verdict.stderr").open("wb")
    cmd = current_sandbox().command(
        [sys.executable, str(PROBE), str(impl), check, str(args_path), str(verdict_path)],
        writable=[workdir.resolve()], readable=[impl.resolve()])
    try:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=child_env(env), text=False,
            pass_fds=pass_fds, **child_popen_kwargs(LIMITS, any_thread=True))  # the task pool's threads outlive their probes
    finally:
        stdout.close()
        stderr.close()
    return ProbeProcess(check=check, proc=proc, workdir=workdir, verdict_path=verdict_path,
                        started=time.monotonic())


def run_probe(impl: Path, check: str, args: dict[str, Any], *, workdir: Path, timeout_s: float,
              env: dict[str, str] | None = None) -> Verdict:
    """Run one check in a child to its end (or its timeout) and return the verdict."""
    return start_probe(impl, check, args, workdir=workdir, env=env).finish(timeout_s)


# ---------------------------------------------------------------------------------------------
# Nothing left behind: orphans come back to the grader, which ends them before writing results
# ---------------------------------------------------------------------------------------------

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


def reap_adopted() -> None:
    """Reap the sandboxes' own processes that ended here: bwrap's first process inside the PID namespace
    (and what it had started) outlives the outer bwrap by a moment and, orphaned, comes back to this
    subreaper as a zombie. With the sandbox on, the grader's own children are always the ``sh`` in front
    of ``bwrap``, so reaping every other zombie child robs no ``Popen``."""
    if not sys.platform.startswith("linux") or not current_sandbox().active or not is_subreaper():
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
