"""The worker process: runs one pass of one implementation file, so that it can be killed for real.

``python -m batchlab.worker RUN_DIR --pass N [--crash KIND --at K] [--t0 T] [--wait-lock S] [--harness-fd FD]``

It reads ``RUN_DIR/spec.json`` (written by :mod:`batchlab.runner`), records the
pass start in the ledger before anything else, imports the implementation from
its file path, builds the service and the sink (which record every side effect)
and awaits ``process_documents_batch``. Exit codes: 0 done, 2 bad batch input (or
a busy run directory), 3 the implementation failed to import or lacks the entry
point, 4 it raised, 5 stopped on request (SIGTERM or SIGINT). A crash plan makes
the service or the sink SIGKILL this very process.

With ``--harness-fd`` (the runner's ``RunSpec.boundary``: the grader) the service, the
sink and the ledger are not built here: they live on the harness side of that socket
(:mod:`batchlab.harness`, in the runner's process) and the processor gets proxies
(:mod:`batchlab.remote`); this process's own events (its start, progress, report,
errors) go over the socket too. The harness side decides and records the planned crash; the
proxies deliver it here at the same point as in-process (the harness side kills as a backstop).

Its lifetime, whoever started it:

* **One worker per run directory.** Before anything else it holds the run
  directory's lock (:class:`batchlab.runlock.RunDirLock`) for its whole life: handed
  over by the runner that started it, or taken here, waiting up to ``--wait-lock``
  seconds, else it exits 2 with ``run_dir_busy`` and writes nothing.
* **It dies with its parent** (:func:`batchlab.lifeline.hold_parent_link`): SIGKILL
  the command that started it and the worker dies too.
* **SIGTERM or SIGINT stops it cleanly**: it takes no new document (a service
  call for a document not yet started this pass waits forever), lets the
  documents in flight commit for up to :data:`STOP_GRACE_S` seconds, records a
  ``stopped`` event and exits 5. Whatever was still in flight is left as the
  state machine says (``processing``) and is redone on resume.
"""

from __future__ import annotations

import time

_BOOT = time.time()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from enum import IntEnum  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

from .ledger import Ev, Ledger  # noqa: E402
from .stopgate import STOP_GRACE_S, GatedService, GatedSink, LedgerProgress, StopGate  # noqa: E402


class WorkerExit(IntEnum):
    """The worker's exit codes, named where they are chosen; the runner and the grader read them by name.

    A SIGKILL shows as a negative return code (``-9``), never as one of these.
    """

    OK = 0
    INPUT = 2  #: the run directory is busy or the batch input was refused: nothing ran
    IMPORT = 3  #: the implementation file could not be imported or has no entry point
    RAISED = 4  #: ``process_documents_batch`` raised
    STOPPED = 5  #: asked to stop (SIGTERM, SIGINT), drained the documents in flight, exited


EXIT_INPUT = WorkerExit.INPUT
EXIT_IMPORT = WorkerExit.IMPORT
EXIT_RAISED = WorkerExit.RAISED
EXIT_STOPPED = WorkerExit.STOPPED
#: Where a worker notes that it validated the input file (its size and time), so a later pass need not read it twice.
INPUT_CHECKED = "input.checked.json"


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles the file from its source every time: never reads or writes ``__pycache__``.

    A cached ``.pyc`` is trusted when the source's mtime (whole seconds) and size match,
    so an edit saved within the same second at the same size would run the old code.
    """

    def get_code(self, fullname: str) -> Any:
        return compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)


def load_impl(path: str | Path, name: str = "student_document_processor") -> ModuleType:
    """Import an implementation file by path (a fresh module object, compiled from its source, every time)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceOnlyLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _report_dict(report: Any) -> dict[str, Any]:
    if hasattr(report, "to_dict"):
        return dict(report.to_dict())
    if isinstance(report, dict):
        return report
    raise TypeError(f"process_documents_batch returned {type(report).__name__}, not a BatchReport")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchlab.worker")
    parser.add_argument("run_dir")
    parser.add_argument("--pass", dest="pass_no", type=int, default=1)
    parser.add_argument("--crash", default="none")
    parser.add_argument("--at", type=int, default=0)
    parser.add_argument("--t0", type=float, default=None)
    parser.add_argument("--harness-fd", type=int, default=None,
                        help="the socket to the harness side (batchlab.harness): service, sink and ledger live there")
    parser.add_argument("--wait-lock", type=float, default=None,
                        help="seconds to wait for a busy run directory (default: batchlab.runlock.DEFAULT_LOCK_WAIT_S)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)

    from .errors import KitError
    from .lifeline import hold_parent_link
    from .rundir import RunDir
    from .runlock import DEFAULT_LOCK_WAIT_S, LOCK_FD_ENV, RunDirLock

    gate = StopGate()
    for signum in (signal.SIGTERM, signal.SIGINT):  # until the event loop takes over (then: loop handlers)
        signal.signal(signum, gate.request)
    link = hold_parent_link()
    try:
        inherited = os.environ.get(LOCK_FD_ENV)
        lock = (RunDirLock.adopt(run_dir, int(inherited)) if inherited else
                RunDirLock(run_dir, role="worker").acquire(
                    DEFAULT_LOCK_WAIT_S if args.wait_lock is None else args.wait_lock))
    except KitError as exc:  # busy: refuse, touching nothing
        print(exc.to_json())
        return EXIT_INPUT
    from .errors import KitError
    from .runspec import read_spec  # not via .runner: that imports the harness side, the wire and subprocess

    try:
        spec = read_spec(run_dir)
    except KitError as exc:  # a damaged spec.json: refuse, touching nothing
        print(exc.to_json())
        return EXIT_INPUT
    channel = None
    if args.harness_fd is not None:  # the boundary: service, sink and ledger live in the harness's process
        from .remote import Channel, RemoteLedger

        channel = Channel(args.harness_fd, on_stop=lambda name: gate.request(signal.Signals[name]))
        ledger: Any = RemoteLedger(channel)
    else:
        ledger = Ledger(RunDir(run_dir).ledger, pass_no=args.pass_no)
    ledger.emit(Ev.PASS_START, t0=args.t0 or _BOOT, boot=_BOOT, batch_id=spec.batch_id, impl=str(spec.impl),
                crash=args.crash, at=args.at, parent_link=link, lock=lock.mechanism)

    from .batchstream import open_checked
    from .errors import BatchInputError
    from .faults import CrashPlan

    try:  # a stream, not a list: memory independent of the batch size (the processor pulls it through its window)
        documents = open_checked(spec.input, None if channel is not None else run_dir / INPUT_CHECKED)
    except BatchInputError as exc:
        ledger.emit(Ev.INPUT_ERROR, error=exc.to_dict())
        print(exc.to_json())
        return EXIT_INPUT
    try:
        module = load_impl(spec.impl)
        entry = getattr(module, "process_documents_batch", None)
        if entry is None or not inspect.iscoroutinefunction(entry):
            raise AttributeError("the module has no `async def process_documents_batch(...)`")
    except BaseException as exc:  # noqa: BLE001 - anything at import is the student's error
        ledger.emit(Ev.STUDENT_ERROR, phase="import", error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc(limit=8))
        traceback.print_exc()
        return EXIT_IMPORT

    crash = CrashPlan(kind=args.crash, at=args.at) if args.crash != "random" else CrashPlan()
    if channel is not None:
        from .remote import RemoteService, RemoteSink

        service: Any = GatedService(RemoteService(channel, crash), gate)  # it delivers a crash in a call
        sink: Any = GatedSink(RemoteSink(channel), gate)
    else:
        from .service import SimulatedService
        from .sink import SqliteSink

        service = GatedService(SimulatedService(plan=spec.plan, latency=spec.latency, ledger=ledger, crash=crash,
                                                outage_switch=RunDir(run_dir).outage_switch), gate)
        sink = GatedSink(SqliteSink(RunDir(run_dir).sink, ledger=ledger, pass_no=args.pass_no, crash=crash,
                                    durable=spec.durable), gate)
    state_dir = RunDir(run_dir).state
    state_dir.mkdir(exist_ok=True)

    def stopped() -> int:
        """Record how far the pass got and leave at once (in-flight work stays ``processing``: redone)."""
        ledger.emit(Ev.STOPPED, signal=gate.signal, left_in_flight=sorted(gate.in_flight)[:50],
                    in_flight=len(gate.in_flight), commits=sink.commits, calls=service.calls,
                    grace_s=STOP_GRACE_S)
        print(f"worker {os.getpid()}: stopped by {gate.signal}; {sink.commits} commits in this pass, "
              f"{len(gate.in_flight)} document(s) left in flight (redone on resume)", flush=True)
        os._exit(EXIT_STOPPED)  # like a kill, but after the drain: no student finalizer runs

    async def supervised() -> Any:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, gate.request, signum)
        task = asyncio.ensure_future(entry(
            documents, batch_id=spec.batch_id, service=service, sink=sink, state_dir=state_dir,
            config=spec.config, progress=LedgerProgress(ledger, gate)))
        while not task.done():
            await asyncio.wait({task}, timeout=0.02)
            if gate.stopping and not task.done() and gate.drained():
                stopped()
        return task.result()

    if gate.stopping:  # asked to stop before the batch even began
        stopped()
    try:
        report = asyncio.run(supervised())
        report_dict = _report_dict(report)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt from student code too
        name = type(exc).__name__
        ledger.emit(Ev.STUDENT_ERROR, phase="run", error=f"{name}: {exc}", traceback=traceback.format_exc(limit=8))
        traceback.print_exc()
        return EXIT_RAISED
    finally:
        sink.close()
    ledger.emit(Ev.PASS_END, report=report_dict, calls=service.calls, commits=sink.commits)
    if channel is None:  # the harness side writes it from the pass_end event
        (run_dir / f"pass{args.pass_no}.report.json").write_text(
            json.dumps(report_dict, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
