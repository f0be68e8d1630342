"""The harness side's end of its socket pair: frames in, replies out, never blocking its event loop.

:class:`batchlab.harness.HarnessSide` serves one worker from its own thread's event loop; this is the
byte level of that, apart from what the frames mean. Reads go into an inbox, not into a future, so a
serving cancelled at the end of a pass loses no byte it had read; whole frames are split off the inbox
in order (:func:`batchlab.wire.split_frames`); replies queue in an outbox flushed as the socket takes
them (a worker slow to read never blocks the loop); and what the worker sent before it exited is still
read, bounded (:meth:`FrameIO.read_left`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from .wire import encode, split_frames


class FrameIO:
    """Non-blocking frame I/O on ``sock`` (already non-blocking) for code running in ``loop``."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock, self.loop = sock, loop
        self.inbox = bytearray()  #: bytes read from the worker, not yet a whole frame
        self.eof = False
        self._out = bytearray()
        self._writing = False
        self._wake: asyncio.Future[None] | None = None

    def read(self) -> bool:
        """One read into :attr:`inbox`; False if nothing was there to read (:attr:`eof` once the peer closed)."""
        try:
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        self.inbox += data
        self.eof = not data
        return True

    async def readable(self) -> None:
        """Wait until a read got something (as ``sock_recv`` waits, but the bytes stay in :attr:`inbox`)."""
        self._wake = self.loop.create_future()
        self.loop.add_reader(self.sock, self._on_readable)
        await self._wake

    def _on_readable(self) -> None:
        if self.read():
            self.loop.remove_reader(self.sock)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)

    def stop_reading(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock)

    def frames(self, data: bytes = b"") -> list[dict[str, Any]]:
        """The whole frames of :attr:`inbox` (plus ``data``), removed from it; a partial frame stays."""
        self.inbox += data
        return split_frames(self.inbox)

    def read_left(self, cap: int) -> bytes:
        """Whatever the socket still holds, up to about ``cap`` bytes (a process left behind may still be writing)."""
        buffer = bytearray()
        while len(buffer) < cap:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            buffer += data
        return bytes(buffer)

    def reply(self, rid: Any, **body: Any) -> None:
        """Send one frame (``{"id": rid, **body}``, or ``body`` alone when ``rid`` is None); queued if the socket is full."""
        self._out += encode({"id": rid, **body} if rid is not None else body)
        self._flush()

    def _flush(self) -> None:
        try:
            while self._out:
                sent = self.sock.send(self._out)
                del self._out[:sent]
        except BlockingIOError:
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.sock, self._flush)
            return
        except OSError:
            self._out.clear()  # the worker is gone
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.sock)
