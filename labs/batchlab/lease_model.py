"""Shard leases with fencing tokens: how N workers share one batch without anyone assigning shards (the protocol;
SQLite's store is :mod:`batchlab.leases`, PostgreSQL's :mod:`batchlab.pgleases`).

A batch is split into ``n_shards`` shards by a stable hash of the idempotency key (``BatchConfig.shard =
"i/n"``). Each shard is a row in a lease store. A worker *claims* a shard, holds it by *renewing* the lease
(every third of its length, from a thread of its own), runs the processor on it and *finishes* it; a worker
that dies stops renewing, its lease *expires* and another worker claims the shard again. A worker that was
only paused (SIGSTOP, a long GC, a swapped-out VM) may wake up after its shard was taken: the *fencing token*
makes its late writes harmless, because every sink write checks the token in the sink's own transaction.

The protocol (every implementation, SQLite in :mod:`batchlab.leases` and PostgreSQL in :mod:`batchlab.pgleases`, keeps these semantics):

* **Shard rows.** ``create_shards(batch_id, n)`` creates shards ``0..n-1`` with ``state = "free"``,
  ``token = 0``, no owner. It is idempotent for the same ``n`` and raises :class:`LeaseError` when the batch
  already has a different number of shards.
* **States.** ``free`` (never claimed, or released), ``held`` (an owner and an expiry), ``done`` (finished;
  never claimed again). A ``held`` shard whose ``expires_at <= now`` is *expired*: claimable, though its row
  still names the old owner until someone claims it.
* **claim(batch_id, owner, *, now, lease_s)** atomically picks the lowest-numbered *expired* shard, else the
  heaviest ``free`` one, then the lowest-numbered (expired first: changed from free first at 00:12 UTC, because
  a dead worker's half-done shard must be taken over by the next worker that looks, not after every free shard
  was claimed, which took 4.6 lease lengths in the first benchmark; heaviest first: a shard's ``weight`` is the
  work the fleet estimated for it at ``create_shards(batch_id, n, weights)`` (0 when unknown), and claiming the
  longest shards first leaves the short ones for the end, so the workers finish together (longest processing
  time first); ``ORDER BY state = 'free', weight DESC, shard``), sets ``owner``,
  ``state = "held"``, ``expires_at = now + lease_s`` and **increments its token on every claim** (a re-claim
  by the same owner too), and returns the new
  :class:`Lease`; ``None`` when no shard is claimable (all ``done``, or held and unexpired). With
  ``expired_only=True`` only an expired shard of *another* owner is claimable (:data:`EXPIRED_WHERE`): a worker's
  rescuer takes over a dead worker's shard while the worker's own pass runs, and never its own shard. Two claimers never
  get the same shard with the same token: SQLite serialises claims with ``BEGIN IMMEDIATE``; PostgreSQL uses
  ``SELECT ... FOR UPDATE SKIP LOCKED``. Each claim is also appended to a ``lease_claims`` history (batch, shard,
  token, owner, t, took_over_from) so audits can tell when a token stopped being current.
* **renew(lease, *, now, lease_s) -> bool** sets ``expires_at = now + lease_s`` only if the row still has the
  lease's ``owner`` and ``token`` and ``state = "held"``. It may revive a lease that expired but that nobody
  claimed (no one else worked on the shard, and the token still fences). ``False`` means the lease is lost:
  the worker must stop its processor at once.
* **finish(lease) -> bool** sets ``state = "done"`` under the same owner/token condition. ``release(lease) ->
  bool`` sets ``state = "free"`` (a clean shutdown gives its shard back without waiting for expiry; the token
  is kept, the next claim increments it).
* **check(lease, *, now) -> bool** is the fence: true only if owner and token match, ``state = "held"`` and
  ``now < expires_at``. Each implementation also offers the same condition *inside the sink's write
  transaction* (:meth:`batchlab.leases.SqliteLeaseStore.fence`, run by ``SqliteSink(guard=...)`` after ``BEGIN IMMEDIATE``
  and before the upsert, so a claim and a stale write are serialised by the same write lock; on PostgreSQL a
  ``SELECT ... FOR SHARE`` of the lease row in the sink's transaction). A refused write raises
  :class:`StaleLease`, the transaction rolls back, and the worker records it with ``refuse`` and stops. An
  accepted fenced write appends (key, shard, token, owner, t, claims_seen = the last ``lease_claims`` seq) to
  ``fenced_puts`` in that same transaction: an audit (:mod:`batchlab.fleet_audit`) can then prove from the
  claim history alone that no put committed under a token after a later claim of its shard.
* **shards(batch_id)** lists every shard's :class:`ShardState` (views, metrics, the dashboard, chaos checks).

Time is always passed in (``now``) from an injected clock: the store never reads a clock itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

FREE, HELD, DONE = "free", "held", "done"


class LeaseError(Exception):
    """The lease store was asked something inconsistent (e.g. another shard count for a batch)."""


class StaleLease(Exception):
    """A fenced write was refused: its lease's token is no longer current (or it expired)."""

    def __init__(self, lease: Lease, key: str) -> None:
        super().__init__(f"stale lease: shard {lease.shard}/{lease.n_shards} token {lease.token} "
                         f"of {lease.owner} may not write {key}")
        self.lease = lease
        self.key = key


#: The exit code of a pass whose put the fence refused (its lease's token had moved on).
EXIT_STALE = 7


class FencedSink:
    """The processor's sink with its lease's fence (SQLite or PostgreSQL): a put the fence refuses calls
    ``on_refused(key)``, which records the refusal and ends the process (it never returns), whatever the
    processor would do with an exception."""

    def __init__(self, inner: Any, on_refused: Callable[[str], NoReturn]) -> None:
        self._inner, self._on_refused = inner, on_refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put(self, key: str, doc: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return int(self._inner.put(key, doc, *args, **kwargs))
        except StaleLease:
            self._on_refused(key)

    def get(self, key: str) -> Any:
        return self._inner.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._inner

    def keys(self) -> set[str]:
        return set(self._inner.keys())


@dataclass(frozen=True)
class Lease:
    """What a claim hands its worker: the shard, who holds it, the fencing token, the expiry at claim time."""

    batch_id: str
    shard: int
    n_shards: int
    owner: str
    token: int
    expires_at: float

    @property
    def spec(self) -> str:
        """The shard as ``BatchConfig.shard`` spells it: ``"i/n"``."""
        return f"{self.shard}/{self.n_shards}"


@dataclass(frozen=True)
class ShardState:
    """One shard row as views read it."""

    batch_id: str
    shard: int
    n_shards: int
    state: str
    owner: str | None
    token: int
    expires_at: float
    claims: int


class LeaseStore(Protocol):
    """The lease protocol of this module's docstring (SQLite: :mod:`batchlab.leases`; PostgreSQL: :mod:`batchlab.pgleases`)."""

    def create_shards(self, batch_id: str, n: int, weights: Sequence[float] | None = None) -> None: ...
    def claim(self, batch_id: str, owner: str, *, now: float, lease_s: float,
              expired_only: bool = False) -> Lease | None: ...
    def renew(self, lease: Lease, *, now: float, lease_s: float) -> bool: ...
    def finish(self, lease: Lease) -> bool: ...
    def release(self, lease: Lease) -> bool: ...
    def check(self, lease: Lease, *, now: float) -> bool: ...
    def refuse(self, lease: Lease, key: str, *, now: float) -> None: ...
    def claim_seq(self, lease: Lease) -> int: ...
    def shards(self, batch_id: str) -> list[ShardState]: ...
    def close(self) -> None: ...


#: A shard another owner's lease expired on (PostgreSQL's placeholders: batch, now, the claimer): what a worker's
#: rescuer (:class:`batchlab.workerproc.Rescuer`) may claim beside its own pass.
EXPIRED_WHERE = "batch_id = %s AND state = 'held' AND expires_at <= %s AND owner <> %s"

#: The condition of every update under a lease (SQLite's placeholders; :class:`GuardedUpdates` swaps them).
LEASE_WHERE = "batch_id = ? AND shard = ? AND owner = ? AND token = ? AND state = 'held'"


def lease_row(lease: Lease) -> tuple[str, int, str, int]:
    """The values :data:`LEASE_WHERE` takes, in its order."""
    return (lease.batch_id, lease.shard, lease.owner, lease.token)


def shard_rows(batch_id: str, n: int, weights: Sequence[float] | None) -> list[tuple[str, int, int, float]]:
    """The rows of a batch's ``n`` new shards, each with its weight (0 when ``weights`` is None or not ``n`` long)."""
    known = list(weights) if weights is not None and len(weights) == n else [0.0] * n
    return [(batch_id, i, n, float(known[i])) for i in range(n)]


class GuardedUpdates:
    """``renew``, ``finish`` and ``release``: one UPDATE each under the lease's owner and token, the same SQL for
    every store but its placeholder (``ph``); the store runs it with ``_write`` (True: one row changed)."""

    ph = "?"

    def _write(self, sql: str, args: tuple[object, ...]) -> bool:
        raise NotImplementedError

    def _update(self, assignment: str, lease: Lease, *args: object) -> bool:
        return self._write(f"UPDATE leases SET {assignment} WHERE {LEASE_WHERE.replace('?', self.ph)}",
                           (*args, *lease_row(lease)))

    def renew(self, lease: Lease, *, now: float, lease_s: float) -> bool:
        return self._update(f"expires_at = {self.ph}", lease, now + lease_s)

    def finish(self, lease: Lease) -> bool:
        return self._update("state = 'done'", lease)

    def release(self, lease: Lease) -> bool:
        return self._update("state = 'free'", lease)
