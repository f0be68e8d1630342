"""The harness side of a pass: the service, the sink and the ledger, outside the student's process.

With ``RunSpec.boundary`` on (the grader's runs), the runner starts a :class:`HarnessSide` per pass:
a thread of the runner's process with its own event loop, holding the ledger file, the sink database
and the simulated service with its fault plan and crash points. The worker gets one end of a
socket pair (an inherited descriptor: it crosses bubblewrap as the lock's does) and hands the
processor proxies (:mod:`batchlab.remote`) that forward every call over :mod:`batchlab.wire`.
So every call and every commit is recorded by code the submission cannot reach, and:

* a planned crash is decided and recorded here, and delivered at the same point as in-process (where
  the service or the sink killed its own process, so no other coroutine of the worker ran after the
  crash point): the worker's proxy SIGKILLs itself right after it sent the K-th call (it counts them
  as this side does, :func:`batchlab.wire.embed_request`), and the K-th put is answered with a
  crash mark once the commit and the ``crash`` event are durable, on which the proxy SIGKILLs itself
  before returning. This side then SIGKILLs the worker's process group anyway (the backstop: a proxy
  patched not to die dies all the same), and nothing the worker sent after the crash point counts.
  A call the worker sent just before it killed itself is still served if it was not read in time
  (:meth:`HarnessSide._drain`): the K-th call's ``call_start`` and ``crash`` are always written;
* a call the processor cancels (its deadline) is cancelled here too and recorded ``cancelled``;
* the worker may only add its own account to the ledger (:data:`batchlab.harness_records.WORKER_EVENTS`: its start, the
  progress states, its report, its errors); a call or commit event it sends is refused and counted;
* a full output committed for chunks the service never answered in this run (any pass) is
  committed but recorded with ``unbacked`` (the chunk numbers) on its ``sink_put`` event: the
  grader does not score it. A degraded output claims no service answer, so it needs none;
* without a sandbox the worker runs as the same user and could still write the files: each pass
  ends by checking that the ledger holds exactly the lines this side wrote, that no other
  connection committed to the sink, that neither file was replaced, and that nothing changed
  between passes (:attr:`foreign`, reported by the runner in ``PassResult.foreign``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from .childproc import kill_group
from .faults import CRASH_DURING_CALL, CrashPlan
from .harness_io import FrameIO
from .harness_records import Backing, HarnessLedger, HarnessSink, RecordsWatch
from .ledger import iter_events
from .rundir import RunDir
from .service import LatencyModel, SimulatedService
from .wire import ProtocolError, doc_from_wire, embed_request, error_to_wire

#: At the end of a pass, at most this much of what the worker sent is still read.
DRAIN_CAP = 16 * 2**20


class _Crashed(BaseException):
    """A planned crash fired here: the worker is being killed, the call or commit gets no answer."""


class HarnessSide:
    """One pass's service, sink and ledger, served to one worker over a socket pair (see the module)."""

    def __init__(self, run_dir: Path, *, pass_no: int, crash: CrashPlan, plan: Any, latency: LatencyModel,
                 durable: str) -> None:
        self.run = RunDir(Path(run_dir))
        self.pass_no, self.crash, self.plan, self.latency = pass_no, crash, plan, latency
        self.sock, child = socket.socketpair()
        self._child: socket.socket | None = child
        self.child_fd = child.fileno()
        os.set_inheritable(self.child_fd, True)
        self.refused = 0
        self.unbacked = 0
        self.halted = self.crashed = self._worker_gone = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.backing = Backing(iter_events(self.run.ledger))
        self.watch = RecordsWatch(self.run, pass_no)
        self.ledger = HarnessLedger(self.run.ledger, pass_no=pass_no)
        self.sink = HarnessSink(self.run.sink, ledger=self.ledger, pass_no=pass_no, crash=crash, durable=durable,
                                on_crash=self._crashed)
        self.watch.opened(self.sink)
        self.service: SimulatedService | None = None
        self._tasks: dict[Any, asyncio.Task[None]] = {}
        self._frames: list[dict[str, Any]] = []  #: whole frames read, not yet handled (kept across a cancel)
        self.loop = asyncio.new_event_loop()
        self.io = FrameIO(self.sock, self.loop)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"harness-pass-{pass_no}")
        self._serve_task: asyncio.Task[None] | None = None

    # -- the runner's side -------------------------------------------------------------------

    def start(self, proc: subprocess.Popen[bytes] | None) -> None:
        """Serve the worker ``proc`` (started with :attr:`child_fd`); None: it could not start."""
        self.proc = proc
        if proc is not None:
            self.ledger.set_pid(proc.pid)
        if self._child is not None:
            self._child.close()
            self._child = None
        self._thread.start()

    @property
    def foreign(self) -> list[str]:
        """What wrote the run's records besides this side (:class:`batchlab.harness_records.RecordsWatch`)."""
        return self.watch.foreign

    def emit(self, ev: str, **fields: Any) -> None:
        """An event of the runner's (a kill, a stop, a timeout), written by this side's ledger."""
        self.ledger.emit(ev, **fields)

    def halt(self) -> None:
        """The worker is being killed: nothing it sent from now on (or had not been read yet) counts."""
        self.halted = True

    def request_stop(self, signal_name: str) -> None:
        """Ask the worker to stop (what SIGTERM does; this reaches a worker inside bubblewrap too)."""
        self.loop.call_soon_threadsafe(functools.partial(self.io.reply, None, op="stop", signal=signal_name))

    def close(self, *, drain: bool, timeout_s: float = 10.0) -> None:
        """After the worker ended: record what it sent before it exited (``drain``), then close everything."""
        if self._thread.ident is None:  # never started: the worker could not be started
            self.sink.close()
            self.ledger.close()
            self.sock.close()
            return
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._finish(drain), self.loop)
        with contextlib.suppress(Exception):
            future.result(timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.sock.setblocking(False)
        self._serve_task = self.loop.create_task(self._serve())
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        """Read and handle the worker's frames until it closes its end (or the pass ends: :meth:`_finish`)."""
        while not self.halted and not self.io.eof:
            if not self.io.read():  # nothing to read now: wait until the socket is readable
                await self.io.readable()
            try:
                await self._take(b"")
            except Exception as exc:  # noqa: BLE001 - whatever the worker sent, the harness side goes on
                self.watch.foreign.append(f"pass {self.pass_no}: the worker broke the protocol: {exc}")
                return

    async def _take(self, data: bytes) -> None:
        """Handle every whole frame read so far, in order; one left when the serving is cancelled stays queued."""
        self._frames += self.io.frames(data)
        while self._frames:
            await self._handle(self._frames.pop(0))

    async def _finish(self, drain: bool) -> None:
        if self._serve_task is not None:
            self._serve_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._serve_task
        self.io.stop_reading()
        self._worker_gone = True
        if drain and not self.halted:
            await self._drain()
        if self.service is not None:
            self.service.ledger = None  # calls still open died with the worker: no event, as in-process
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self.watch.closing(self.ledger, self.sink)
        self.sink.close()
        self.ledger.close()
        self.sock.close()

    async def _drain(self) -> None:
        """What the worker sent before it exited (bounded: a process it left behind may still be writing).

        Frames already read but not handled when the serving was cancelled come first. Requests are
        not served any more (nobody waits for their answer), except while a planned crash during a
        call is still to come: the worker kills itself right after sending the K-th call, maybe
        before this side read it, and what it sent up to that call counts as if read in time.
        """
        left = self.io.read_left(DRAIN_CAP)
        with contextlib.suppress(ProtocolError):
            await self._take(left)

    async def _handle(self, frame: dict[str, Any]) -> None:
        if self.halted:
            return
        op, rid = frame.get("op"), frame.get("id")
        if op != "emit" and not isinstance(rid, int):
            raise ProtocolError(f"a request without an integer id: {op!r}")
        if op == "emit":
            if not self.ledger.emit_for_worker(frame, self.run.path / f"pass{self.pass_no}.report.json"):
                self.refused += 1
            return
        if self._worker_gone and not self._crash_call_pending():
            return  # a request after the worker ended is not served
        if op in ("hello", "embed") and self.service is None:
            self.service = SimulatedService(plan=self.plan, latency=self.latency, ledger=self.ledger,
                                            crash=self.crash, on_crash=self._crashed,
                                            outage_switch=self.run.outage_switch)
        if op == "hello":
            self.io.reply(rid, ok=True)
        elif op == "embed":
            self._tasks[rid] = self.loop.create_task(self._embed(rid, frame))
            await asyncio.sleep(0)  # the call starts (its call_start is written) before the next frame is read
        elif op == "cancel":
            task = self._tasks.get(frame.get("target"))
            if task is not None:
                task.cancel()
        elif op in ("put", "get", "contains", "keys"):
            self._sink_op(rid, op, frame)
        else:
            self.io.reply(rid, err={"type": "ProtocolError", "message": f"unknown operation {op!r}"})

    def _crash_call_pending(self) -> bool:
        """A crash during a call is planned and not delivered yet (the worker may have sent that call and died)."""
        return self.crash.kind == CRASH_DURING_CALL and not self.crashed

    async def _embed(self, rid: Any, frame: dict[str, Any]) -> None:
        try:
            doc, chunk, text = embed_request(frame)
            assert self.service is not None
            vector = await self.service.embed(doc, chunk, text)
            self.backing.answered(doc, chunk)
            self.io.reply(rid, ok=vector)
        except _Crashed:
            self._deliver_crash(rid)
        except asyncio.CancelledError:
            pass  # cancelled by the processor (or the worker is gone): no answer
        except Exception as exc:  # noqa: BLE001 - the service's errors go back to the processor
            self.io.reply(rid, err=error_to_wire(exc))
        finally:
            self._tasks.pop(rid, None)

    def _sink_op(self, rid: Any, op: str, frame: dict[str, Any]) -> None:
        try:
            if op == "put":
                self.io.reply(rid, ok=self._put(frame))
            elif op == "get":
                rec = self.sink.get(str(frame.get("key")))
                self.io.reply(rid, ok=None if rec is None else dict(rec.__dict__))
            elif op == "contains":
                self.io.reply(rid, ok=frame.get("key") in self.sink)
            else:
                self.io.reply(rid, ok=sorted(self.sink.keys()))
        except _Crashed:
            self._deliver_crash(rid)
        except Exception as exc:  # noqa: BLE001 - a refused put goes back to the processor
            self.io.reply(rid, err=error_to_wire(exc))

    def _put(self, frame: dict[str, Any]) -> int:
        doc, key, mode = doc_from_wire(frame.get("doc")), frame.get("key"), frame.get("mode", "full")
        chunks, vectors = frame.get("chunks"), frame.get("vectors")
        if not (isinstance(mode, str) and isinstance(chunks, list) and isinstance(vectors, list)
                and all(isinstance(c, str) for c in chunks) and all(isinstance(v, list) for v in vectors)):
            raise TypeError("put needs a mode, a list of chunk texts and a list of vectors")
        missing = self.backing.missing(doc, mode, len(chunks))
        self.unbacked += bool(missing)
        self.ledger.put_extra = {"unbacked": missing} if missing else None
        try:
            return self.sink.put(key, doc, chunks, vectors, mode=mode)  # type: ignore[arg-type]
        finally:
            self.ledger.put_extra = None

    def _crashed(self) -> None:
        """A planned crash: its event is written (and a commit durable); nothing the worker sends now counts."""
        self.halted = self.crashed = True
        if self.service is not None:
            self.service.ledger = None
        raise _Crashed

    def _deliver_crash(self, rid: Any) -> None:
        """Answer the crash point's request with the crash mark (the proxy SIGKILLs itself on it, never
        returning to its caller), then SIGKILL the worker's group anyway: the backstop.

        The mark goes first: :attr:`halted` is already set, so whatever the worker does in between counts
        for nothing, and an honest worker dies in the proxy, at the crash point, whichever lands first.
        """
        self.io.reply(rid, crash={"kind": self.crash.kind, "at": self.crash.at})
        if self.proc is not None:
            kill_group(self.proc)
