"""The simulated external parse-and-embed service.

It stands in for a remote model endpoint: each call embeds one chunk of one
document, takes a simulated latency with a long tail, and fails according to a
seeded :class:`~batchlab.faults.FaultPlan`. It records every call in the ledger
(start, ok or fail, with the attempt number it counted itself), so the grader
knows exactly what a processor did, whatever the processor says about itself.

The service counts attempts per ``(document identity, chunk)`` within one worker
process; a resumed pass starts counting again, as a restarted client would.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import pipeline
from .documents import Document, ident_of, normalize_id
from .faults import CANCELLED_KIND, CRASH_DURING_CALL, OUTAGE_KIND, CrashPlan, FaultPlan, kill_self, unit
from .ledger import Ev, Ledger

#: How many chunks' attempt counts the service remembers at least: every chunk called in the last ATTEMPT_MEMORY
#: calls is remembered, and at most twice as many (:class:`RecentAttempts`). The fault plan's decision depends on the
#: attempt number, so a count forgotten while its chunk is still being retried would change the faults a rerun sees:
#: 32 768 is twice every chunk of the grader's largest batch (1 000 documents, 15 519 chunks: nothing is forgotten
#: there), and at a million documents on a zero-latency service (about 10 000 calls a second) still several seconds
#: of calls, against a retry's wait of at most ``max_delay`` + jitter (0.5 s + 0.1 s by default).
ATTEMPT_MEMORY = 32768


class RecentAttempts:
    """Attempts by ``(ident, chunk)`` of the chunks called last; a chunk never called (or forgotten) reads 0.

    Two generations of plain dictionaries keyed by ``hash((ident, chunk))``, a 64-bit integer: a count is looked
    up in the young one, then the old one, and moved to the young one; when the young one holds ``memory``
    chunks it becomes the old one (the old one dropped). So a chunk called within the last ``memory`` calls is
    always remembered, and at most ``2 * memory`` are: about 75 bytes a chunk, 4.9 MB at most by default,
    against 14 MB for an ordered dictionary keyed by the identity strings (measured by tracemalloc at 65 536
    chunks). Two different chunks share a count only if their 64-bit hashes collide: with 65 536 chunks
    remembered, about one chance in 10^10 per batch.
    """

    __slots__ = ("memory", "_young", "_old")

    def __init__(self, memory: int = ATTEMPT_MEMORY) -> None:
        self.memory = memory
        self._young: dict[int, int] = {}
        self._old: dict[int, int] = {}

    def __getitem__(self, key: tuple[str, int]) -> int:
        h = hash(key)
        return self._young.get(h) or self._old.get(h, 0)

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def bump(self, ident: str, chunk: int) -> int:
        """Count one more call of ``(ident, chunk)`` and return its attempt number (1 for its first call)."""
        h = hash((ident, chunk))
        attempt = (self._young.get(h) or self._old.pop(h, 0)) + 1
        self._young[h] = attempt
        if len(self._young) >= self.memory:
            self._old, self._young = self._young, {}
        return attempt


class ServiceError(Exception):
    """A failed call to the external service. ``kind`` classifies it for failure statistics."""

    transient = False

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class TransientServiceError(ServiceError):
    """Timeout or 503: worth retrying with backoff (the lesson's 500 path, retry branch)."""

    transient = True


class PermanentServiceError(ServiceError):
    """The service cannot handle this document (a parse failure): retrying will not help."""


class MalformedResponseError(ValueError):
    """The service answered, but the client cannot decode the answer (a poison document, ``FaultPlan.poison_ids``).

    Deliberately *not* a :class:`ServiceError`: it stands for the unexpected
    exception one odd document triggers in a client library or in the processor's
    own code. Retrying will not help; it must not stop the batch either.
    """

    kind = "malformed_response"


_STANDARD_NORMAL = statistics.NormalDist()
#: How late ``asyncio.sleep`` wakes up on average, subtracted from each simulated latency.
TIMER_SLACK_S = 0.0006
#: How long a call to an unreachable service takes to fail (a refused connection fails fast).
OUTAGE_LATENCY_S = 0.001


@dataclass(frozen=True)
class LatencyModel:
    """Log-normal call latency: ``median_ms`` with spread ``sigma``; slow calls add the long tail.

    The default (10 ms median) is a fast embedding endpoint. Much smaller values
    measure the event loop rather than the service: asyncio's timers wake up to
    1 ms late (epoll rounds its timeout up to whole milliseconds).
    """

    median_ms: float = 10.0
    sigma: float = 0.4

    def sample(self, u: float) -> float:
        """Latency in seconds for a uniform number ``u`` in (0, 1)."""
        if self.median_ms <= 0:
            return 0.0
        u = min(max(u, 1e-9), 1 - 1e-9)
        z = _STANDARD_NORMAL.inv_cdf(u)
        return self.median_ms / 1000.0 * float(2.718281828459045 ** (self.sigma * z))

    @property
    def mean_s(self) -> float:
        return self.median_ms / 1000.0 * float(2.718281828459045 ** (self.sigma**2 / 2))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def modelled_latency(plan: FaultPlan, latency: LatencyModel, ident: str, chunk: int, attempt: int, *,
                     slow: bool) -> float:
    """The seeded latency of one call, in seconds: a pure function, as every fault decision is."""
    delay = latency.sample(unit(plan.seed, "latency", ident, chunk, attempt))
    return delay * plan.slow_factor if slow else delay


def guaranteed_busy_s(doc: Document, plan: FaultPlan, latency: LatencyModel) -> float:
    """The least real time the service keeps ``doc`` in flight when its chunks are embedded in order.

    The sum of its chunks' first-attempt latencies, less the timer slack the service
    takes off each sleep; retries and backoff only add to it, and a slower machine
    only stretches it (``asyncio.sleep`` never returns early). A test that must kill
    a pass while work is outstanding puts such a document in the batch and keeps its
    kill window well inside this figure, so the kill lands on a fast idle machine
    and on a loaded one alike.
    """
    ident, norm = ident_of(doc), normalize_id(doc.id)
    total = 0.0
    for chunk, _ in enumerate(pipeline.chunk_text(pipeline.clean_text(doc.content))):
        delay = modelled_latency(plan, latency, ident, chunk, 1, slow=plan.is_slow(ident, norm, chunk, 1))
        total += max(0.0, delay - TIMER_SLACK_S)
    return total


class SimulatedService:
    """The external service handed to ``process_documents_batch``.

    Use: ``vector = await service.embed(doc, chunk_index, chunk_text)`` for each
    chunk of a document, in order. Raises :class:`TransientServiceError` or
    :class:`PermanentServiceError`.
    """

    def __init__(
        self,
        *,
        plan: FaultPlan | None = None,
        latency: LatencyModel | None = None,
        ledger: Ledger | None = None,
        crash: CrashPlan | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_crash: Callable[[], None] = kill_self,
        timer_slack_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        outage_switch: Path | None = None,
    ) -> None:
        self.plan = plan or FaultPlan()
        #: The planned outages count from the pass's first call (set then), not from this object's creation: a
        #: worker that is slow to start (an import on a loaded machine) must still meet the outage it was planned.
        #: ``outage_switch``, while the file exists, is a live outage.
        self._clock = clock
        self._t0: float | None = None
        self.outage_switch = outage_switch
        self.down = False
        # asyncio wakes a sleeper late: epoll rounds its timeout up to whole milliseconds, and the
        # loop needs a moment to run the callback (0.7 ms on average, measured on a 2-core machine).
        # Sleeping that much less keeps each call's real duration at the modelled latency on average;
        # an injected sleep (tests) is taken at its word.
        self.timer_slack_s = (TIMER_SLACK_S if sleep is asyncio.sleep else 0.0) if timer_slack_s is None \
            else timer_slack_s
        self.latency = latency or LatencyModel()
        self.ledger = ledger
        self.crash = crash or CrashPlan()
        self._sleep = sleep
        self._on_crash = on_crash
        # Bounded, so the service's memory does not grow with the batch (issue 17): the attempts of the chunks called
        # last (a chunk is retried within its document's few seconds).
        self._attempts = RecentAttempts()
        self._doc_inflight: dict[tuple[str, str], int] = defaultdict(int)
        self.calls = 0
        self.failures = 0
        self.inflight = 0
        self.max_inflight = 0
        self.max_doc_inflight = 0

    def _ident(self, doc: Document) -> tuple[str, str]:
        """The document's identity (``ident_of`` keeps the last documents' identities) and its normalized id."""
        return ident_of(doc), normalize_id(doc.id)

    def _emit(self, ev: Ev, **fields: Any) -> None:
        if self.ledger is not None:
            self.ledger.emit(ev, **fields)

    def unreachable(self) -> bool:
        """Whether a call made now finds the service down (a planned outage or the live switch).

        Each change is recorded as an ``outage`` event (``state`` down or up, ``source`` plan or
        switch) the first time a call sees it, so the ledger says when the processor met the outage.
        """
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        planned = bool(self.plan.outages) and self.plan.in_outage(now - self._t0)
        switched = self.outage_switch is not None and os.path.exists(self.outage_switch)
        down = planned or switched
        if down != self.down:
            self.down = down
            self._emit(Ev.OUTAGE, state="down" if down else "up",
                       source="plan" if planned else "switch" if switched else "none")
        return down

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]:
        """Embed chunk number ``chunk`` (from 0) of ``doc``; the result is the model's vector."""
        ident, norm = self._ident(doc)
        attempt = self._attempts.bump(ident, chunk)
        self.calls = call_no = self.calls + 1
        self.inflight = inflight = self.inflight + 1
        doc_ref = (doc.source, doc.id)
        self._doc_inflight[doc_ref] = doc_inflight = self._doc_inflight[doc_ref] + 1
        if inflight > self.max_inflight:
            self.max_inflight = inflight
        if doc_inflight > self.max_doc_inflight:
            self.max_doc_inflight = doc_inflight
        if (ledger := self.ledger) is not None:
            ledger.emit(Ev.CALL_START, doc_id=doc.id, ident=ident, chunk=chunk, attempt=attempt,
                        call=call_no, inflight=inflight, doc_inflight=doc_inflight)
        try:
            if self.crash.kind == CRASH_DURING_CALL and call_no == self.crash.at:
                self._emit(Ev.CRASH, kind=CRASH_DURING_CALL, at=call_no, doc_id=doc.id, ident=ident)
                self._on_crash()
            if self.unreachable():
                await self._sleep(OUTAGE_LATENCY_S)
                self.failures += 1
                self._emit(Ev.CALL_FAIL, doc_id=doc.id, ident=ident, chunk=chunk, attempt=attempt,
                           call=call_no, error=OUTAGE_KIND, permanent=False)
                raise TransientServiceError(OUTAGE_KIND, f"the service is unreachable ({doc.id} chunk {chunk})")
            fault = self.plan.decide(ident, norm, chunk, attempt)
            if fault.stuck:
                await asyncio.get_running_loop().create_future()  # never set: only a cancellation ends it
            # a zero median is a zero latency whatever the draw: the draw (a hash) is skipped, not changed
            delay = modelled_latency(self.plan, self.latency, ident, chunk, attempt, slow=fault.slow) \
                if self.latency.median_ms > 0 else 0.0
            await self._sleep(max(0.0, delay - self.timer_slack_s) if delay > 0 else 0.0)
            if fault.error is not None:
                self.failures += 1
                self._emit(Ev.CALL_FAIL, doc_id=doc.id, ident=ident, chunk=chunk, attempt=attempt,
                           call=call_no, error=fault.error, permanent=fault.permanent or fault.poison)
                if fault.poison:
                    raise MalformedResponseError(f"cannot decode the service's answer for {doc.id} chunk {chunk}: "
                                                 "expected a JSON list of floats, got b'<html>'")
                error_cls = PermanentServiceError if fault.permanent else TransientServiceError
                raise error_cls(fault.error, f"{fault.error} on {doc.id} chunk {chunk} attempt {attempt}")
            vector = pipeline.embed(text)
            if (ledger := self.ledger) is not None:
                ledger.emit(Ev.CALL_OK, doc_id=doc.id, ident=ident, chunk=chunk, attempt=attempt,
                            call=call_no, latency=round(delay, 6))
            return vector
        except asyncio.CancelledError:  # the processor's deadline (or its shutdown) cancelled this call
            self.failures += 1
            self._emit(Ev.CALL_FAIL, doc_id=doc.id, ident=ident, chunk=chunk, attempt=attempt,
                       call=call_no, error=CANCELLED_KIND, permanent=False)
            raise
        finally:
            self.inflight -= 1
            self._doc_inflight[doc_ref] -= 1
            if not self._doc_inflight[doc_ref]:
                del self._doc_inflight[doc_ref]
