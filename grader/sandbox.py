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

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.childproc import child_popen_kwargs, environ_snapshot, kill_group
from batchlab.runner import Limits

from .bubblewrap import Sandbox, detect
from .reaper import reap_adopted, wait_group_gone

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
        reap_adopted(current_sandbox().active)
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
