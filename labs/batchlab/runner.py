"""The runner: executes an implementation file in child processes, crashing and resuming it.

A *run* is one batch in one run directory, whose files :class:`batchlab.rundir.RunDir` names::

    RUN_DIR/spec.json        what to run (implementation, input, config, fault plan)
    RUN_DIR/ledger.jsonl     every side effect, every pass (ground truth)
    RUN_DIR/sink.sqlite      committed outputs
    RUN_DIR/state/           the processor's own checkpoint (``state_dir``)
    RUN_DIR/passN.stdout/.stderr  the child's output, kept for feedback

Pass 1 runs with a planned crash; later passes resume with the same batch id and
state directory (``run_passes`` can kill several passes in a row). Every pass
has a timeout; a hanging child is killed and reported, never waited for.

Process lifetime (issue 14):

* ``RUN_DIR/worker.lock`` makes a run directory one worker's at a time
  (:class:`batchlab.runlock.RunDirLock`): the runner takes it before it writes
  anything and hands it to each worker, which holds it for its whole life;
  another runner waits ``RunSpec.lock_wait_s`` and then refuses with ``run_dir_busy``.
* every worker dies with the process that started it
  (:func:`batchlab.host.parent_link`: ``PR_SET_PDEATHSIG`` on Linux, a watched pipe elsewhere);
* ``run_pass(stop=...)`` asks the worker to stop (SIGTERM: no new documents, the
  ones in flight get ``worker.STOP_GRACE_S`` to commit) and kills its group if it
  has not exited :data:`STOP_KILL_AFTER_S` seconds after the request.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import BatchConfig
from .faults import CRASH_NONE, CRASH_RANDOM, CrashPlan, FaultPlan
from .host import child_popen_kwargs, environ_snapshot, kill_group, parent_link
from .ledger import append_event
from .rundir import RunDir
from .runlock import DEFAULT_LOCK_WAIT_S, LOCK_NAME, RunDirLock
from .service import LatencyModel
from .worker import STOP_GRACE_S, WorkerExit

EventsCallback = Callable[[list[dict[str, Any]]], None]
#: Ledger events that show a pass is doing real work (a random kill's delay counts from the first).
WORK_EVENTS = frozenset({"call_start", "sink_put"})
#: After a stop request, the worker's group is SIGKILLed if it is still alive this long after (seconds).
STOP_KILL_AFTER_S = STOP_GRACE_S + 3.0
#: ``stop()`` returns this to ask for an immediate kill (a second Ctrl-C).
STOP_NOW = "now"
StopCallback = Callable[[], str | None]


@dataclass(frozen=True)
class Limits:
    """Resource limits for a child (the grader's protection against student code).

    :func:`batchlab.host.child_popen_kwargs` sets them in the child before exec
    (the address-space limit on Linux only: see :mod:`batchlab.host`).
    """

    cpu_s: int | None = None
    memory_bytes: int | None = None
    file_bytes: int | None = None
    processes: int | None = None  #: RLIMIT_NPROC: processes and threads of the child's user (root is exempt)


@dataclass
class RunSpec:
    """Everything that defines a run, apart from its crash plans."""

    impl: Path
    input: Path
    run_dir: Path
    batch_id: str = "batch-001"
    config: BatchConfig = field(default_factory=BatchConfig)
    plan: FaultPlan = field(default_factory=FaultPlan)
    latency: LatencyModel = field(default_factory=LatencyModel)
    durable: str = "process"
    timeout_s: float = 120.0
    output_cap: int = 64_000
    limits: Limits | None = None
    env: dict[str, str] = field(default_factory=dict)
    lock_wait_s: float = DEFAULT_LOCK_WAIT_S
    #: A sandbox around the worker's command line (the grader's bubblewrap: ``grader/bubblewrap.py``), or None.
    wrap: Callable[[list[str]], list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "impl": str(Path(self.impl).resolve()), "input": str(Path(self.input).resolve()),
            "batch_id": self.batch_id, "config": self.config.to_dict(), "plan": self.plan.to_dict(),
            "latency": self.latency.to_dict(), "durable": self.durable,
        }


@dataclass
class PassResult:
    """How one child process ended."""

    pass_no: int
    returncode: int | None
    duration_s: float
    crash: CrashPlan
    killed_by_parent: bool = False
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    stopped_by: str | None = None  #: the signal name when the pass was asked to stop (Ctrl-C, SIGTERM)

    @property
    def sigkilled(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def outcome(self) -> str:
        if self.timed_out:
            return "timeout"
        if self.sigkilled:
            return "killed"
        if self.returncode == WorkerExit.OK:
            return "ok"
        if self.returncode == WorkerExit.STOPPED:
            return "stopped"
        if self.returncode is not None and self.returncode < 0:
            return f"signal {-self.returncode}"
        named: dict[int, str] = {WorkerExit.INPUT: "bad input", WorkerExit.IMPORT: "import error",
                                 WorkerExit.RAISED: "raised"}
        return named.get(self.returncode or 0, f"exit {self.returncode}")


class LedgerTail:
    """Reads the events appended to a ledger since the last call (for live progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                blob = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(blob)
        blob = self._partial + blob
        lines = blob.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                events.append(ev)
        return events


def prepare(spec: RunSpec, *, fresh: bool = False) -> Path:
    """Create the run directory and write its spec (``fresh`` removes an earlier run first).

    ``fresh`` keeps the lock file: a caller that holds the lock keeps holding the same file.
    """
    run = Path(spec.run_dir)
    if fresh and run.exists():
        for entry in run.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    RunDir(run).state.mkdir(parents=True, exist_ok=True)
    RunDir(run).spec.write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    return run


def _read_capped(path: Path, cap: int) -> str:
    if not path.exists():
        return ""
    size = path.stat().st_size
    with path.open("rb") as fh:
        data = fh.read(cap)
    text = data.decode("utf-8", errors="replace")
    if size > cap:
        text += f"\n... [{size - cap} more bytes of output cut]"
    return text


def start_pass(spec: RunSpec, pass_no: int, crash: CrashPlan, *,
               lock: RunDirLock | None = None) -> tuple[subprocess.Popen[bytes], float]:
    """Start the worker of one pass; returns the process and its start time (the resume clock's zero).

    ``lock``: the run directory's lock, already held by the caller, handed to the
    worker. Without one, the lock is taken here (waiting ``spec.lock_wait_s``, then
    :class:`batchlab.runlock.RunDirBusyError`) and the worker alone holds it once started.
    The worker dies with this process (:func:`batchlab.host.parent_link`).
    """
    run = Path(spec.run_dir)
    own = lock is None
    held = RunDirLock(run).acquire(spec.lock_wait_s) if lock is None else lock
    kind = crash.kind if crash.kind != CRASH_RANDOM else CRASH_NONE
    t0 = time.time()
    cmd = [sys.executable, "-m", "batchlab.worker", str(run), "--pass", str(pass_no), "--crash", kind,
           "--at", str(crash.at), "--t0", repr(t0)]
    if spec.wrap is not None:
        cmd = spec.wrap(cmd)
    link = parent_link()
    env = {**environ_snapshot(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **spec.env, **link.env,
           **held.child_env()}
    proc = None
    try:
        stdout = RunDir(run).stdout(pass_no).open("wb")
        stderr = RunDir(run).stderr(pass_no).open("wb")
        try:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=False,
                                    pass_fds=(*link.pass_fds, *([held.fd] if held.fd is not None else [])),
                                    **child_popen_kwargs(spec.limits))
        finally:
            stdout.close()
            stderr.close()
    finally:
        link.attach(proc)
        if own:
            held.release()  # the worker holds it now, for its whole life
    return proc, t0


def run_pass(
    spec: RunSpec,
    pass_no: int,
    crash: CrashPlan | None = None,
    *,
    on_events: EventsCallback | None = None,
    poll_s: float = 0.02,
    lock: RunDirLock | None = None,
    stop: StopCallback | None = None,
) -> PassResult:
    """Run one pass to its end (or its kill, or its timeout, or its stop).

    ``stop`` is polled: once it returns a signal name the worker gets SIGTERM (it
    takes no new documents and exits within ``worker.STOP_GRACE_S``), and its group
    is killed :data:`STOP_KILL_AFTER_S` after the request or at once when ``stop``
    returns :data:`STOP_NOW`.
    """
    crash = crash or CrashPlan()
    run = Path(spec.run_dir)
    ledger = RunDir(run).ledger
    tail = LedgerTail(ledger)
    tail.read_new() if ledger.exists() else None  # only this pass's events from here on
    proc, t0 = start_pass(spec, pass_no, crash, lock=lock)
    kill_at: float | None = None
    killed = timed_out = False
    stopped_by: str | None = None
    stop_deadline: float | None = None
    while proc.poll() is None:
        now = time.time()
        asked = stop() if stop is not None else None
        if asked and stopped_by is None:
            stopped_by = asked
            append_event(ledger, "stop", pass_no=pass_no, signal=asked, by="parent")
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            stop_deadline = now + STOP_KILL_AFTER_S
        if stop_deadline is not None and (now >= stop_deadline or asked == STOP_NOW) and not killed:
            kill_group(proc)
            killed = True
        events = tail.read_new()
        if on_events and events:
            on_events(events)
        if crash.kind == CRASH_RANDOM and kill_at is None and any(e.get("ev") in WORK_EVENTS for e in events):
            # The clock starts at the pass's first service call: the processor is at work, whatever is left.
            kill_at = now + crash.random_delay(spec.plan.seed, pass_no)
        if kill_at is not None and now >= kill_at and not killed:
            append_event(ledger, "kill", pass_no=pass_no, kind=CRASH_RANDOM, by="parent",
                         delay=round(kill_at - t0, 4))
            kill_group(proc)
            killed = True
        if now - t0 > spec.timeout_s:
            append_event(ledger, "timeout", pass_no=pass_no, after_s=spec.timeout_s)
            kill_group(proc)
            timed_out = True
        time.sleep(poll_s)
    proc.wait()
    if on_events:
        rest = tail.read_new()
        if rest:
            on_events(rest)
    return PassResult(
        pass_no=pass_no, returncode=proc.returncode, duration_s=time.time() - t0, crash=crash,
        killed_by_parent=killed, timed_out=timed_out,
        stdout=_read_capped(RunDir(run).stdout(pass_no), spec.output_cap),
        stderr=_read_capped(RunDir(run).stderr(pass_no), spec.output_cap),
        stopped_by=stopped_by,
    )


def run_passes(
    spec: RunSpec,
    crashes: Sequence[CrashPlan],
    *,
    fresh: bool = True,
    on_events: EventsCallback | None = None,
    on_pass: Callable[[PassResult], None] | None = None,
) -> list[PassResult]:
    """One pass per crash plan, then a final pass without a crash that resumes whatever is left.

    A pass whose worker could not even start the batch (bad input, import error)
    ends the run: resuming it would fail the same way.
    """
    with RunDirLock(spec.run_dir).acquire(spec.lock_wait_s) as lock:  # ours from the spec to the last pass
        prepare(spec, fresh=fresh)
        results: list[PassResult] = []
        plans = [*crashes, CrashPlan()]
        for pass_no, crash in enumerate(plans, start=1):
            result = run_pass(spec, pass_no, crash, on_events=on_events, lock=lock)
            results.append(result)
            if on_pass:
                on_pass(result)
            if result.returncode in (WorkerExit.INPUT, WorkerExit.IMPORT) or result.timed_out:
                break
    return results


def run_two_pass(spec: RunSpec, crash: CrashPlan, **kwargs: Any) -> list[PassResult]:
    """The lesson's scenario: a first pass that crashes, then the resume pass."""
    return run_passes(spec, [crash], **kwargs)
