"""Test doubles for the harness's injected effects, shared by the grader, the bench and the kit's tests.

A processor gets every effect it has injected (``sleep``, ``clock``, ``service``,
``sink``, the checkpoint store), so a test replaces each with a double that
records or bends it. These are the doubles the grader, ``batchlab bench`` and
the tests used to keep each for themselves (as structlog ships its
``structlog.testing``):

* :class:`RecordingSleep`: an async ``sleep`` that waits for nothing and records
  every delay (optionally moving a :class:`FakeClock` by it);
* :class:`FakeClock`: a ``clock`` that moves only when told;
* :class:`MemoryCheckpointStore`: a :class:`~batchlab.contract.CheckpointStore` in a
  dict, the baseline the bench measures the checkpoint's overhead against;
* :class:`KillingSink`: the harness sink plus a crash point it lacks, a SIGKILL
  *before* the K-th put is written;
* :class:`GuardedService`: the harness service, failing permanently past ``guard``
  attempts on one chunk, so that a processor that retries forever still ends.

The grader's step probes no longer build the service or the sink in the student's
process: their harness side (``grader/stepharness.py``) serves a ``GuardedService``
and places the kill before the K-th write itself, over the process boundary.
:class:`KillingSink` stays for in-process runs (the kit's tests).

This is core (the grader may import it): it imports only the harness and the
standard library.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contract import PROCESSING
from .documents import Document, ident_of
from .ledger import Ev
from .service import PermanentServiceError, SimulatedService
from .sink import SqliteSink


class FakeClock:
    """A monotonic clock that stands still until :meth:`advance` (or a :class:`RecordingSleep`) moves it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward; a clock never runs backwards."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds


class RecordingSleep:
    """An ``async sleep(seconds)`` that records each delay in :attr:`delays` and returns at once.

    ``yield_to_loop`` (default) still gives the event loop one turn, as a real sleep
    would, so that other tasks run between retries; ``False`` returns without
    yielding (a retry policy driven alone). With a ``clock``, each sleep moves it
    by the delay, so the processor's own timings see the time it asked to wait.
    """

    def __init__(self, *, yield_to_loop: bool = True, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self.yield_to_loop = yield_to_loop
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(float(seconds))
        if self.clock is not None:
            self.clock.advance(float(seconds))
        if self.yield_to_loop:
            await asyncio.sleep(0)


@dataclass(frozen=True)
class MemoryEntry:
    """One entry of a :class:`MemoryCheckpointStore` (a :class:`~batchlab.contract.CheckpointRecord`)."""

    key: str
    doc_id: str
    state: str
    attempts: int
    last_error: str | None


@dataclass
class MemoryCheckpointStore:
    """A checkpoint store in a dict: nothing is durable, nothing is checked, every move is kept.

    It has the constructor and methods of the student's store (``state_dir`` is
    accepted and ignored), counts attempts as the lesson does (one per move into
    ``processing``) and keeps ``last_error`` until a new error replaces it. It does
    not police the state machine: the grader's checkpoint tests do that to the
    student's store, and the bench only needs the cheapest store there is.
    """

    state_dir: str | Path = ""
    batch_id: str = ""
    shard: str | None = None
    closed: bool = field(default=False, init=False)
    _entries: dict[str, MemoryEntry] = field(default_factory=dict, init=False, repr=False)

    def get(self, key: str) -> MemoryEntry | None:
        return self._entries.get(key)

    def transition(self, key: str, state: str, *, doc_id: str = "", error: str | None = None) -> MemoryEntry:
        old = self._entries.get(key)
        entry = MemoryEntry(key=key, doc_id=doc_id or (old.doc_id if old else ""), state=state,
                            attempts=(old.attempts if old else 0) + (state == PROCESSING),
                            last_error=error if error is not None else (old.last_error if old else None))
        self._entries[key] = entry
        return entry

    def entries(self) -> dict[str, MemoryEntry]:
        return dict(self._entries)

    def close(self) -> None:
        self.closed = True


class KillingSink(SqliteSink):
    """The harness sink, plus a crash point the harness lacks: SIGKILL *before* the K-th put is written.

    ``kill_before_put_at=0`` never kills. The crash is written to the ledger first
    (``crash`` with ``kind="before_commit"``), as the harness's own crash points do;
    ``on_crash`` (default: SIGKILL this process) is the effect, injectable in tests.
    """

    def __init__(self, *args: Any, kill_before_put_at: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kill_before_put_at = kill_before_put_at
        self.attempted = 0

    def put(self, key: str, doc: Document, chunks: Sequence[str], vectors: Sequence[Sequence[float]],
            *, mode: str = "full") -> int:
        self.attempted += 1
        if self.attempted == self.kill_before_put_at:
            if self.ledger is not None:
                self.ledger.emit(Ev.CRASH, kind="before_commit", at=self.attempted, doc_id=doc.id, ident=ident_of(doc))
            self._on_crash()
        return super().put(key, doc, chunks, vectors, mode=mode)


class GuardedService(SimulatedService):
    """The harness service; past ``guard`` attempts on one chunk it fails permanently, so endless retries end.

    ``guard=None`` never trips. Each trip is counted in :attr:`guard_trips` and
    raises ``PermanentServiceError("grader_guard", ...)`` without a service call.
    """

    def __init__(self, *args: Any, guard: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.guard_trips = 0

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        if self.guard is not None:
            ident, _ = self._ident(doc)
            if self._attempts[(ident, chunk)] >= self.guard:
                self.guard_trips += 1
                raise PermanentServiceError("grader_guard", f"{doc.id} chunk {chunk}: more than {self.guard} calls")
        return await super().embed(doc, chunk, text)


__all__ = ["FakeClock", "GuardedService", "KillingSink", "MemoryCheckpointStore", "MemoryEntry", "RecordingSleep"]


class WatchedRaw(dict):  # type: ignore[type-arg]
    """A raw document of a stream that a weak reference can watch (a plain dict cannot be weakly referenced)."""


def forbid_listing(setattr: Callable[[Any, str, Any], None], *, alive: int = 3, index: bool = True) -> None:
    """Make any listing of a batch fail (give it ``monkeypatch.setattr``): memory flat in N proven by the code path.

    A stream fails once more than ``alive`` of the documents it handed out are still held, and the
    list-based readers (``load_batch``, ``Inventory.of``, with ``index`` also ``stream[i]``) fail at once.
    Shared by the tests of every front-end that must read its input as a stream.
    """
    from . import batchfile
    from .batchstream import BatchStream
    from .inventory import Inventory

    entries = BatchStream.entries

    def watched(self: BatchStream) -> Iterator[Any]:
        held: list[weakref.ref[WatchedRaw]] = []
        for entry in entries(self):
            held = [r for r in held if r() is not None]
            if len(held) > alive:  # garbage in a reference cycle (a parse error's traceback) is not held: collect it
                gc.collect()
                held = [r for r in held if r() is not None]
            assert len(held) <= alive, f"{len(held)} documents read earlier are still held: the input was listed"
            raw = WatchedRaw(entry.raw) if type(entry.raw) is dict else entry.raw  # a RejectedDocument stays one
            if isinstance(raw, WatchedRaw):
                held.append(weakref.ref(raw))
            yield raw
            del raw

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the batch was loaded as a list")

    setattr(BatchStream, "__iter__", watched)
    if index:
        setattr(BatchStream, "__getitem__", refuse)
    setattr(batchfile, "load_batch", refuse)
    setattr(Inventory, "of", refuse)
