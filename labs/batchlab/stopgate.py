"""A clean stop of a worker's pass: no new document once asked, the ones in flight given time to commit.

SIGTERM or SIGINT (Ctrl-C, ``batchlab serve``'s cancel, the runner's stop) must not leave a document half done
for nothing, nor start new ones that would be cut too. The worker (:mod:`batchlab.worker`) wraps the service and
the sink it hands to the processor: a document is *in flight* from its first service call in this pass until its
sink commit or a terminal state reported through ``progress``; once a stop was asked for, a document not yet started
waits forever at its first call, and the pass ends when nothing is in flight or :data:`STOP_GRACE_S` is over.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from .ledger import Ev, Ledger

__all__ = ["STOP_GRACE_S", "GatedService", "GatedSink", "LedgerProgress", "StopGate"]

#: After a stop request, the documents in flight get this long to commit (seconds).
STOP_GRACE_S = 3.0
#: The states after which a document is no longer in flight.
_TERMINAL = frozenset({"done", "degraded", "failed"})


class StopGate:
    """What the worker knows about a stop request and the documents in flight when it came.

    A document is *in flight* from its first service call in this pass until its
    sink commit or a terminal state reported through ``progress``.
    """

    def __init__(self) -> None:
        self.signal: str | None = None
        self.t_stop: float | None = None
        self.in_flight: set[str] = set()
        self._never: Any = None

    @property
    def stopping(self) -> bool:
        return self.signal is not None

    def request(self, signum: int, *_: Any) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            self.t_stop = time.monotonic()

    def started(self, doc_id: str) -> None:
        self.in_flight.add(doc_id)

    def ended(self, doc_id: str) -> None:
        self.in_flight.discard(doc_id)

    async def hold(self) -> None:
        """Wait forever: a document not yet started is not started once a stop was asked for."""
        if self._never is None:
            self._never = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._never)

    def drained(self) -> bool:
        """Nothing left in flight, or the grace time is over."""
        assert self.t_stop is not None
        return not self.in_flight or time.monotonic() - self.t_stop >= STOP_GRACE_S


class LedgerProgress:
    """The ``progress`` callback given to the processor: state changes go to the ledger."""

    def __init__(self, ledger: Ledger, gate: StopGate | None = None) -> None:
        self._ledger = ledger
        self._gate = gate

    def __call__(self, doc_id: str, state: str, *, error: str | None = None, attempts: int = 0) -> None:
        self._ledger.emit(Ev.STATE, doc_id=str(doc_id), state=str(state), error=error, attempts=attempts)
        if self._gate is not None and str(state) in _TERMINAL:
            self._gate.ended(str(doc_id))


class GatedService:
    """The service handed to the processor; once a stop was asked for, a document not yet started waits forever."""

    def __init__(self, inner: Any, gate: StopGate) -> None:
        self._inner, self._gate = inner, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, doc: Any, chunk: int, text: str) -> list[float]:
        doc_id = str(getattr(doc, "id", ""))
        if self._gate.stopping and doc_id not in self._gate.in_flight:
            await self._gate.hold()
        self._gate.started(doc_id)
        result: list[float] = await self._inner.embed(doc, chunk, text)
        return result


class GatedSink:
    """The sink handed to the processor; a commit ends a document's flight."""

    def __init__(self, inner: Any, gate: StopGate) -> None:
        self._inner, self._gate = inner, gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: str, doc: Any, *args: Any, **kwargs: Any) -> int:
        writes: int = self._inner.put(key, doc, *args, **kwargs)
        self._gate.ended(str(getattr(doc, "id", "")))
        return writes

    def get(self, key: str) -> Any:
        return self._inner.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def keys(self) -> Any:
        return self._inner.keys()
