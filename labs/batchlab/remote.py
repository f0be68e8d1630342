"""The worker's side of the boundary: the service, the sink and the ledger as proxies to the harness side.

``python -m batchlab.worker RUN_DIR --harness-fd N`` (the runner's ``RunSpec.boundary``) builds these
instead of the real service and sink: each method sends a request over :mod:`batchlab.wire` and waits
for the harness side's answer (:mod:`batchlab.harness`), which alone records and decides anything.
They keep the contract (:class:`batchlab.contract.Service`, :class:`batchlab.contract.Sink`): ``await
service.embed(...)`` (concurrent calls are multiplexed by request id; a cancelled call is cancelled
over there too), ``sink.put/get/keys/in``. A submission that bypasses them and talks the protocol
itself gains nothing the proxies could not do: it is the harness side that checks and records.

Answers are read by whoever waits (the processor's loop, or a blocking sink call) and handed to
their callers by id. A ``stop`` frame from the harness side is the
runner's stop request (what SIGTERM does, which bubblewrap does not forward).

A planned crash is delivered here, synchronously, at the point where the in-process service and
sink killed their own process, so that no other coroutine of the worker runs after the crash point
(where a kill lands inside a broken submission must not vary from run to run): :class:`RemoteService`
SIGKILLs this process right after the K-th call's frame is sent (counted as the harness side counts,
:func:`batchlab.wire.embed_request`), and an answer carrying a crash mark (the K-th put's, once its
commit and the ``crash`` event are durable) SIGKILLs it before anyone reads that answer. The harness
side kills the worker's group right after in any case: a proxy patched not to die gains nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from . import faults
from .faults import CRASH_DURING_CALL, CrashPlan
from .sink import SinkRecord
from .wire import (
    ProtocolError,
    doc_to_wire,
    embed_request,
    encode,
    rebuild_error,
    record_from_wire,
    split_frames,
)


class HarnessGone(ConnectionError):
    """The harness side closed the connection (the pass is over, or the runner died)."""


class _Waiter:
    """Who waits for an answer: a blocking caller (``done``) or a future of an event loop (``future``)."""

    def __init__(self, future: asyncio.Future[Any] | None = None) -> None:
        self.future = future
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None

    def deliver(self, reply: dict[str, Any] | None) -> None:
        self.reply = reply
        self.done.set()
        if self.future is not None:
            if threading.get_ident() == self.thread:
                _settle(self.future, reply)
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                    self.future.get_loop().call_soon_threadsafe(_settle, self.future, reply)


class Channel:
    """The worker's end of the socket: requests out, answers routed to their callers by id.

    No reader thread: whoever needs an answer reads. The processor's event loop reads when the socket
    is readable (``add_reader``: an awaited call costs no thread switch); a blocking sink call reads
    until its own answer came, handing the others to their callers. One reader at a time (a lock).
    """

    def __init__(self, fd: int, *, on_stop: Callable[[str], None] | None = None) -> None:
        self.sock = socket.socket(fileno=fd)
        self.sock.setblocking(True)
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}
        self._buffer = bytearray()
        self._gone = False
        self._loops: set[int] = set()
        self.on_stop = on_stop

    def send(self, message: dict[str, Any], *, sent: Callable[[bytes], None] | None = None) -> None:
        """Send one frame; ``sent(frame)`` runs once it is wholly sent, still holding the send lock (so the
        order of those callbacks is the order of the frames on the wire, whatever thread sends)."""
        frame = encode(message)
        with self._send_lock:
            try:
                self.sock.sendall(frame)
            except OSError as exc:
                raise HarnessGone(f"the harness side is gone: {exc}") from None
            if sent is not None:
                sent(frame)

    def _register(self, waiter: _Waiter) -> int:
        with self._lock:
            if self._gone:
                raise HarnessGone("the harness side is gone")
            rid = next(self._ids)
            self._waiting[rid] = waiter
        return rid

    def call(self, op: str, **args: Any) -> Any:
        """A blocking request (the sink's methods are synchronous in the contract)."""
        waiter = _Waiter()
        rid = self._register(waiter)
        self.send({"op": op, "id": rid, **args})
        while not waiter.done.is_set():
            if self._read_lock.acquire(timeout=0.05):
                try:
                    while not waiter.done.is_set():
                        self._pump(block=True)
                finally:
                    self._read_lock.release()
        return _result(waiter.reply)

    async def call_async(self, op: str, *, sent: Callable[[bytes], None] | None = None, **args: Any) -> Any:
        """A request awaited in the processor's loop; cancelling it cancels it on the harness side.
        ``sent``: see :meth:`send` (it runs before this coroutine yields to the loop)."""
        loop = asyncio.get_running_loop()
        if id(loop) not in self._loops:
            self._loops.add(id(loop))
            loop.add_reader(self.sock.fileno(), self._on_readable)
        future: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        rid = self._register(_Waiter(future))
        self.send({"op": op, "id": rid, **args}, sent=sent)
        try:
            reply = await future
        except asyncio.CancelledError:
            with self._lock:
                self._waiting.pop(rid, None)
            try:
                self.send({"op": "cancel", "id": next(self._ids), "target": rid})
            except HarnessGone:
                pass
            raise
        return _result(reply)

    def _on_readable(self) -> None:
        if self._read_lock.acquire(blocking=False):  # a blocking caller is reading: it routes our answers
            try:
                self._pump(block=False)
            finally:
                self._read_lock.release()

    def _pump(self, *, block: bool) -> None:
        """Read once (holding the read lock) and route every complete frame."""
        try:
            data = self.sock.recv(1 << 16) if block else self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._closed()
            return
        self._buffer += data
        try:
            frames = split_frames(self._buffer)
        except ProtocolError:
            self._closed()
            return
        for frame in frames:
            self._route(frame)

    def _closed(self) -> None:
        with self._lock:
            self._gone = True
            waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            waiter.deliver(None)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def _route(self, frame: dict[str, Any]) -> None:
        if "crash" in frame:  # the planned crash point: die before anyone reads this answer
            faults.kill_self()
        if frame.get("op") == "stop":
            if self.on_stop is not None:
                self.on_stop(str(frame.get("signal", "SIGTERM")))
            return
        with self._lock:
            waiter = self._waiting.pop(frame.get("id"), None)  # type: ignore[arg-type]
        if waiter is not None:
            waiter.deliver(frame)


def _settle(future: asyncio.Future[dict[str, Any] | None], reply: dict[str, Any] | None) -> None:
    if not future.done():
        future.set_result(reply)


def _result(reply: dict[str, Any] | None) -> Any:
    if reply is None:
        raise HarnessGone("the harness side closed the connection before answering")
    if "crash" in reply:  # only if the kill above was patched out: still no answer (the group kill follows)
        raise HarnessGone("the planned crash: this process is being killed")
    if "err" in reply:
        raise rebuild_error(reply["err"])
    return reply.get("ok")


class RemoteLedger:
    """The worker's own events (its start, progress, report, errors), written by the harness side."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def emit(self, ev: str, **fields: Any) -> None:
        self._channel.send({"op": "emit", "ev": str(ev), "fields": fields})

    def close(self) -> None:
        """Nothing to close here: the harness side owns the file."""


class RemoteService:
    """The service handed to the processor: every call is made, timed and recorded on the harness side.

    With a crash plan ``during_call`` at K, the K-th call the harness side will count (a frame it
    accepts: :func:`batchlab.wire.embed_request`, checked on the exact bytes sent) kills this
    process as soon as its frame is sent, before the processor's loop runs anything else.
    """

    def __init__(self, channel: Channel, crash: CrashPlan | None = None) -> None:
        self._channel = channel
        self.calls = 0
        self.counted = 0  #: calls sent that the harness side counts (what a planned crash counts)
        self._crash_at = crash.at if crash is not None and crash.kind == CRASH_DURING_CALL else 0
        channel.call("hello")  # the service is created now (its planned outages count from here)

    async def embed(self, doc: Any, chunk: int, text: str) -> list[float]:
        """Embed chunk number ``chunk`` (from 0) of ``doc``: see :class:`batchlab.service.SimulatedService`."""
        self.calls += 1
        result = await self._channel.call_async("embed", doc=doc_to_wire(doc), chunk=chunk, text=text,
                                                sent=self._sent if self._crash_at else None)
        return list(result)

    def _sent(self, frame: bytes) -> None:
        """An ``embed`` frame is on the wire (send lock held): count it as the harness side will; the K-th dies."""
        try:
            embed_request(json.loads(frame[4:]))
        except (ProtocolError, ValueError):
            return  # the harness side refuses it without counting it
        self.counted += 1
        if self.counted == self._crash_at:
            faults.kill_self()


class RemoteSink:
    """The sink handed to the processor: every commit is made and recorded on the harness side."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self.commits = 0

    def put(self, key: str, doc: Any, chunks: Sequence[str], vectors: Sequence[Sequence[float]],
            *, mode: str = "full") -> int:
        """Upsert the output of ``doc`` under ``key``: see :class:`batchlab.sink.SqliteSink`."""
        writes = int(self._channel.call("put", key=key, doc=doc_to_wire(doc), chunks=list(chunks),
                                        vectors=[list(v) for v in vectors], mode=mode))
        self.commits += 1
        return writes

    def get(self, key: str) -> SinkRecord | None:
        return record_from_wire(self._channel.call("get", key=key))

    def __contains__(self, key: object) -> bool:
        return bool(self._channel.call("contains", key=key))

    def keys(self) -> set[str]:
        return set(self._channel.call("keys"))

    def close(self) -> None:
        """Nothing to close here: the harness side owns the database."""
