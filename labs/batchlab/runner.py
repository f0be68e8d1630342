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
  (:func:`batchlab.lifeline.parent_link`: ``PR_SET_PDEATHSIG`` on Linux, a watched pipe elsewhere);
* ``run_pass(stop=...)`` asks the worker to stop (SIGTERM: no new documents, the
  ones in flight get ``stopgate.STOP_GRACE_S`` to commit) and kills its group if it
  has not exited :data:`STOP_KILL_AFTER_S` seconds after the request.

The process boundary (``RunSpec.boundary``, the grader's runs): the service, the sink and
the ledger live on a :class:`batchlab.harness.HarnessSide` in this process, one per pass,
and the worker talks to them over a socket; the runner's own events go through it, a kill
halts it first, and :attr:`PassResult.foreign` says what wrote the records beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .childproc import child_popen_kwargs, environ_snapshot, kill_group
from .faults import CRASH_NONE, CRASH_RANDOM, CrashPlan
from .harness import HarnessSide
from .harness_records import forget
from .ledger import Ev, LedgerTail, append_event
from .lifeline import parent_link
from .passresult import PassResult, read_capped
from .rundir import RunDir
from .runlock import LOCK_NAME, RunDirLock
from .runspec import Limits, RunSpec, read_spec
from .stopgate import STOP_GRACE_S
from .worker import WorkerExit

__all__ = [
    "WORK_EVENTS", "EventsCallback", "LedgerTail", "Limits", "PassResult", "RunSpec", "prepare", "read_spec",
    "run_pass", "run_passes", "run_two_pass", "start_pass",
]

EventsCallback = Callable[[list[dict[str, Any]]], None]
#: Ledger events that show a pass is doing real work (a random kill's delay counts from the first).
WORK_EVENTS = frozenset({Ev.CALL_START, Ev.SINK_PUT})
#: After a stop request, the worker's group is SIGKILLed if it is still alive this long after (seconds).
STOP_KILL_AFTER_S = STOP_GRACE_S + 3.0
#: ``stop()`` returns this to ask for an immediate kill (a second Ctrl-C).
STOP_NOW = "now"
StopCallback = Callable[[], str | None]


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
    if fresh:
        forget(run)
    RunDir(run).state.mkdir(parents=True, exist_ok=True)
    RunDir(run).spec.write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    return run


def start_pass(spec: RunSpec, pass_no: int, crash: CrashPlan, *, lock: RunDirLock | None = None,
               harness: HarnessSide | None = None) -> tuple[subprocess.Popen[bytes], float]:
    """Start the worker of one pass; returns the process and its start time (the resume clock's zero).

    ``lock``: the run directory's lock, already held by the caller, handed to the
    worker. Without one, the lock is taken here (waiting ``spec.lock_wait_s``, then
    :class:`batchlab.runlock.RunDirBusyError`) and the worker alone holds it once started.
    The worker dies with this process (:func:`batchlab.lifeline.parent_link`). With ``harness``
    (the boundary), the worker gets its socket and the harness side serves it from here on.
    """
    run = Path(spec.run_dir)
    own = lock is None
    held = RunDirLock(run).acquire(spec.lock_wait_s) if lock is None else lock
    kind = crash.kind if crash.kind != CRASH_RANDOM else CRASH_NONE
    t0 = time.time()
    cmd = [sys.executable, "-m", "batchlab.worker", str(run), "--pass", str(pass_no), "--crash", kind,
           "--at", str(crash.at), "--t0", repr(t0)]
    if harness is not None:
        cmd += ["--harness-fd", str(harness.child_fd)]
    if spec.wrap is not None:
        cmd = spec.wrap(cmd)
    link = parent_link(across_namespaces=spec.wrap is not None)
    env = {**environ_snapshot(), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **spec.env, **link.env,
           **held.child_env()}
    proc = None
    try:
        stdout = RunDir(run).stdout(pass_no).open("wb")
        stderr = RunDir(run).stderr(pass_no).open("wb")
        try:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env, text=False,
                                    pass_fds=(*link.pass_fds, *([held.fd] if held.fd is not None else []),
                                              *([harness.child_fd] if harness is not None else [])),
                                    **child_popen_kwargs(spec.limits))
        finally:
            stdout.close()
            stderr.close()
    finally:
        link.attach(proc)
        if harness is not None and proc is not None:
            harness.start(proc)
        if own:
            held.release()  # the worker holds it now, for its whole life
    return proc, t0


class LivePass:
    """One pass while it runs, from the parent's side: what :func:`run_pass` loops over and the dashboard polls.

    It starts the worker (:func:`start_pass`) and, at each :meth:`step`, reads this pass's new
    ledger events and applies the parent's rules, in one place for every front-end: the random
    kill a seeded delay after the pass's first service call (the processor is at work, whatever is
    left), the timeout, and a stop request (SIGTERM, the worker drains within
    ``stopgate.STOP_GRACE_S``; its group is killed :data:`STOP_KILL_AFTER_S` after the request, or at
    once for :data:`STOP_NOW`). :meth:`kill` is a kill on demand (the dashboard's *Crash now*);
    :meth:`finish` reaps the worker and returns its :class:`PassResult`. Every kill the parent
    sends is in the ledger first (``kill``/``timeout``/``stop`` events).
    """

    def __init__(self, spec: RunSpec, pass_no: int, crash: CrashPlan | None = None, *,
                 lock: RunDirLock | None = None) -> None:
        self.spec, self.pass_no, self.crash = spec, pass_no, crash or CrashPlan()
        self.ledger = RunDir(Path(spec.run_dir)).ledger
        self._tail = LedgerTail(self.ledger)
        self._tail.skip_existing()  # only this pass's events from here on
        self.harness = HarnessSide(Path(spec.run_dir), pass_no=pass_no, crash=self.crash, plan=spec.plan,
                                   latency=spec.latency, durable=spec.durable) if spec.boundary else None
        try:
            self.proc, self.t0 = start_pass(spec, pass_no, self.crash, lock=lock, harness=self.harness)
        except BaseException:
            if self.harness is not None:
                self.harness.close(drain=False)
            raise
        self.kill_at: float | None = None
        self.killed = self.timed_out = False
        self.stopped_by: str | None = None
        self._stop_deadline: float | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def step(self, stop: str | None = None) -> list[dict[str, Any]]:
        """One look at the pass: its new events, after the kill, timeout and stop rules were applied."""
        now = time.time()
        if stop and self.stopped_by is None and self.running:
            self.stopped_by = stop
            self._record(Ev.STOP, signal=stop, by="parent")
            if self.harness is not None:  # a sandbox does not forward SIGTERM (its shell dies of it): the socket does
                self.harness.request_stop("SIGTERM")
            if self.harness is None or self.spec.wrap is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGTERM)
            self._stop_deadline = now + STOP_KILL_AFTER_S
        if self._stop_deadline is not None and (now >= self._stop_deadline or stop == STOP_NOW) and not self.killed:
            self._kill_group()
        events = self._tail.read_new()
        if self.crash.kind == CRASH_RANDOM and self.kill_at is None and any(e.get("ev") in WORK_EVENTS for e in events):
            self.kill_at = now + self.crash.random_delay(self.spec.plan.seed, self.pass_no)
        if self.kill_at is not None and now >= self.kill_at and not self.killed and self.running:
            self.kill(kind=CRASH_RANDOM, by="parent", delay=self.kill_at - self.t0)
        if now - self.t0 > self.spec.timeout_s and self.running and not self.timed_out:
            self._record(Ev.TIMEOUT, after_s=self.spec.timeout_s)
            self.timed_out = True
            self._kill_group()
        return events

    def kill(self, *, kind: str, by: str, delay: float | None = None) -> None:
        """SIGKILL the worker's group now, the ``kill`` event written first (``delay``: since the pass began)."""
        self._record(Ev.KILL, kind=kind, by=by, delay=round(time.time() - self.t0 if delay is None else delay, 4))
        self._kill_group()

    def _record(self, ev: Ev, **fields: Any) -> None:
        """An event of the parent's, in the ledger (through the harness side when there is one: it owns the file)."""
        if self.harness is not None:
            self.harness.emit(ev, **fields)
        else:
            append_event(self.ledger, ev, pass_no=self.pass_no, **fields)

    def _kill_group(self) -> None:
        self.killed = True
        if self.harness is not None:
            self.harness.halt()
        kill_group(self.proc)

    def finish(self) -> tuple[PassResult, list[dict[str, Any]]]:
        """Reap the worker; its result and the pass's last events."""
        self.proc.wait()
        if self.harness is not None:
            self.harness.close(drain=not self.killed)
        run = RunDir(Path(self.spec.run_dir))
        result = PassResult(
            pass_no=self.pass_no, returncode=self.proc.returncode, duration_s=time.time() - self.t0,
            crash=self.crash, killed_by_parent=self.killed and not self.timed_out, timed_out=self.timed_out,
            stdout=read_capped(run.stdout(self.pass_no), self.spec.output_cap),
            stderr=read_capped(run.stderr(self.pass_no), self.spec.output_cap),
            stopped_by=self.stopped_by)
        if self.harness is not None:
            result.foreign, result.refused_events = list(self.harness.foreign), self.harness.refused
        return result, self._tail.read_new()


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
    """Run one pass to its end (or its kill, or its timeout, or its stop): a :class:`LivePass` stepped every ``poll_s``.

    ``stop`` is polled: once it returns a signal name the worker is asked to stop (see :class:`LivePass`).
    """
    live = LivePass(spec, pass_no, crash, lock=lock)
    while live.running:
        events = live.step(stop() if stop is not None else None)
        if on_events and events:
            on_events(events)
        time.sleep(poll_s)
    result, rest = live.finish()
    if on_events and rest:
        on_events(rest)
    return result


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
