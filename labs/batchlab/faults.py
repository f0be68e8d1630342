"""The fault plan: which calls fail, which are slow, and where the worker is killed.

Every decision is a pure function of ``(seed, document identity, chunk, attempt)``,
never of time or scheduling, so a rerun with the same seed sees exactly the same
faults whatever order the processor chose (docs/design.md, principle 8: replayable faults).

Faults, in the lesson's words (模拟解析失败/外部服务超时):

* transient: a call fails with a timeout or a 503 at ``transient_rate`` (1-5 % in
  the lesson); retrying the same call later succeeds with high probability;
* fail-first-k: a document's calls fail their first ``k`` attempts, then succeed
  (tests that retries really happen, and that backoff waits between them);
* permanent: every call for the document fails with a permanent error (a parse
  failure); only the degraded path can commit it;
* slow: a call takes ``slow_factor`` times longer (the long tail), at ``slow_rate``
  per call or on every call of the documents named in ``slow_ids`` (a long-tail
  document that stays in flight while the rest of the batch moves: what a test
  needs to be sure a kill lands while work is outstanding);
* poison: every call for a document named in ``poison_ids`` gets an answer the
  client cannot decode, raised as :class:`batchlab.service.MalformedResponseError`
  (a ``ValueError``, the way a JSON decode error of a proxy's HTML error page
  surfaces from a client library). It is *not* a ``ServiceError``: a processor
  that catches only the service's errors lets it escape, and one odd but valid
  document stops the whole batch (docs/design.md, Traps: a poison document must not
  stop the batch). A correct processor ends it ``failed`` (or ``degraded``) and
  goes on.
* stuck: a call that never returns by itself (长尾任务的饥饿: a hung connection), at
  ``stuck_rate`` per call or on the first attempt of every chunk of the documents named in
  ``stuck_ids``. Only a deadline that cancels it (``asyncio.timeout``) frees its concurrency
  slot; the retry that follows answers as usual.
* outage: the service is unreachable (熔断's reason to exist: an external model that is down)
  during each ``(start_s, duration_s)`` window of ``outages``, measured from the pass's first
  service call (so a worker slow to start still meets it): every call fails fast with the transient ``unreachable`` error.
  A live outage can also be switched on and off by a file (``RunDir.outage_switch``; the
  teacher's dashboard toggles it). Outages are the one fault that depends on time, not on
  ``(seed, identity, chunk, attempt)``: an outage *is* a stretch of time; the ledger records
  each start and end (``outage`` events) so the metrics and the grader still read what happened.

Crash points (:class:`CrashPlan`) kill the worker with a real SIGKILL:
``during_call`` inside the K-th service call of the pass, ``after_commit`` right
after the K-th sink commit returned (before the processor can record it in its
checkpoint), and ``random``: the parent process kills the worker a seeded random delay
after the pass's first service call, which can land anywhere, a checkpoint
write included.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

TRANSIENT_KINDS = ("timeout", "unavailable_503")
PERMANENT_KIND = "parse_error"
POISON_KIND = "malformed_response"
#: The transient error of a call made while the service is unreachable (an outage).
OUTAGE_KIND = "unreachable"
#: The error the ledger records for a call the processor cancelled (its deadline, or a stuck call freed).
CANCELLED_KIND = "cancelled"

CRASH_NONE = "none"
CRASH_DURING_CALL = "during_call"
CRASH_AFTER_COMMIT = "after_commit"
CRASH_RANDOM = "random"
CRASH_KINDS = (CRASH_NONE, CRASH_DURING_CALL, CRASH_AFTER_COMMIT, CRASH_RANDOM)


def kill_self() -> None:
    """The real crash: SIGKILL this process, with no chance to clean up or flush."""
    os.kill(os.getpid(), signal.SIGKILL)


def unit(seed: int, *parts: object) -> float:
    """A deterministic number in [0, 1) from the seed and the parts."""
    text = "|".join([str(seed), *map(str, parts)]).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True)
class Fault:
    """What the plan decided for one call: an error kind (or None) and a latency factor."""

    error: str | None = None
    permanent: bool = False
    slow: bool = False
    poison: bool = False
    stuck: bool = False


@dataclass(frozen=True)
class CrashPlan:
    """Where a pass is killed. ``at`` counts from 1 within the pass; ``window`` is in seconds."""

    kind: str = CRASH_NONE
    at: int = 0
    window: tuple[float, float] = (0.2, 0.8)

    def __post_init__(self) -> None:
        if self.kind not in CRASH_KINDS:
            raise ValueError(f"unknown crash kind {self.kind!r}; one of {CRASH_KINDS}")
        if self.kind in (CRASH_DURING_CALL, CRASH_AFTER_COMMIT) and self.at < 1:
            raise ValueError(f"crash kind {self.kind!r} needs at >= 1")

    def random_delay(self, seed: int, pass_no: int) -> float:
        lo, hi = self.window
        return lo + (hi - lo) * unit(seed, "kill", pass_no)


@dataclass(frozen=True)
class FaultPlan:
    """Seeded faults for the simulated service. All rates are per call, in [0, 1]."""

    seed: int = 0
    transient_rate: float = 0.0
    fail_first_rate: float = 0.0
    fail_first_k: int = 2
    permanent_rate: float = 0.0
    slow_rate: float = 0.0
    slow_factor: float = 20.0
    permanent_ids: tuple[str, ...] = ()
    fail_first_ids: Mapping[str, int] = field(default_factory=dict)
    slow_ids: tuple[str, ...] = ()
    poison_ids: tuple[str, ...] = ()
    stuck_rate: float = 0.0
    stuck_ids: tuple[str, ...] = ()
    #: ``(start_s, duration_s)`` windows, from the creation of the pass's service, when it is unreachable.
    outages: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("transient_rate", "fail_first_rate", "permanent_rate", "slow_rate", "stuck_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for window in self.outages:
            if len(window) != 2 or window[0] < 0 or window[1] < 0:
                raise ValueError(f"an outage is (start_s >= 0, duration_s >= 0), got {window!r}")

    def in_outage(self, elapsed_s: float) -> bool:
        """Whether the service is unreachable ``elapsed_s`` seconds after it was created (a planned outage)."""
        return any(start <= elapsed_s < start + duration for start, duration in self.outages)

    def is_stuck(self, ident: str, norm_id: str, chunk: int, attempt: int) -> bool:
        """Whether this call hangs until cancelled: the first attempt of a ``stuck_ids`` document, or by rate."""
        return (norm_id in self.stuck_ids and attempt == 1) or (
            self.stuck_rate > 0 and unit(self.seed, "stuck", ident, chunk, attempt) < self.stuck_rate)

    def is_permanent(self, ident: str, norm_id: str) -> bool:
        return norm_id in self.permanent_ids or (
            self.permanent_rate > 0 and unit(self.seed, "perm", ident) < self.permanent_rate)

    def fails_first(self, ident: str, norm_id: str) -> int:
        if norm_id in self.fail_first_ids:
            return int(self.fail_first_ids[norm_id])
        if self.fail_first_rate > 0 and unit(self.seed, "first", ident) < self.fail_first_rate:
            return self.fail_first_k
        return 0

    def is_slow(self, ident: str, norm_id: str, chunk: int, attempt: int) -> bool:
        return norm_id in self.slow_ids or (
            self.slow_rate > 0 and unit(self.seed, "slow", ident, chunk, attempt) < self.slow_rate)

    def decide(self, ident: str, norm_id: str, chunk: int, attempt: int) -> Fault:
        """The fault for the ``attempt``-th call (from 1) on ``chunk`` of a document."""
        slow = self.is_slow(ident, norm_id, chunk, attempt)
        if self.is_stuck(ident, norm_id, chunk, attempt):
            return Fault(stuck=True, slow=slow)
        if norm_id in self.poison_ids:
            return Fault(error=POISON_KIND, poison=True, slow=slow)
        if self.is_permanent(ident, norm_id):
            return Fault(error=PERMANENT_KIND, permanent=True, slow=slow)
        if attempt <= self.fails_first(ident, norm_id):
            return Fault(error=TRANSIENT_KINDS[attempt % 2], slow=slow)
        u = unit(self.seed, "transient", ident, chunk, attempt) if self.transient_rate > 0 else 1.0
        if u < self.transient_rate:
            return Fault(error=TRANSIENT_KINDS[int(u * 1e6) % 2], slow=slow)
        return Fault(slow=slow)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["permanent_ids"] = list(self.permanent_ids)
        data["fail_first_ids"] = dict(self.fail_first_ids)
        data["slow_ids"] = list(self.slow_ids)
        data["poison_ids"] = list(self.poison_ids)
        data["stuck_ids"] = list(self.stuck_ids)
        data["outages"] = [list(window) for window in self.outages]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultPlan:
        data = dict(data)
        data["permanent_ids"] = tuple(data.get("permanent_ids", ()))
        data["fail_first_ids"] = dict(data.get("fail_first_ids", {}))
        data["slow_ids"] = tuple(data.get("slow_ids", ()))
        data["poison_ids"] = tuple(data.get("poison_ids", ()))
        data["stuck_ids"] = tuple(data.get("stuck_ids", ()))
        data["outages"] = tuple((float(start), float(duration)) for start, duration in data.get("outages", ()))
        return cls(**data)
