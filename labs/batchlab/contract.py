"""The student contract: what ``process_documents_batch`` receives and returns.

Everything a processor needs from the harness is named here, so that the
student module imports one place (``from batchlab.contract import ...``):

* :class:`BatchConfig`: the knobs (concurrency, retry budget, backoff);
* the state names of the checkpoint state machine
  ``pending -> processing -> done | failed`` (``degraded`` is a kind of done);
* :class:`BatchReport`: what the processor reports about a run. The grader
  recomputes every figure from the ledger and the sink and checks that the
  report agrees (observability must not lie);
* :class:`Progress`: the callback through which the processor reports state
  changes (the progress bar and the teacher's dashboard read them);
* :class:`Service` and :class:`Sink`: what the harness hands the processor (the
  simulated embedding service and the output store), as ``typing.Protocol`` classes, so
  that a test double (:mod:`batchlab.testing`) or another harness fits as long as
  it has the same methods;
* :class:`CheckpointStore` and :class:`CheckpointRecord`: what the student builds
  in step 01, as the harness and the grader use it (the student's class matches it
  by shape; it does not inherit from it).

The signature every implementation provides::

    async def process_documents_batch(documents, *, batch_id, service, sink,
                                      state_dir, config, progress=None,
                                      sleep=asyncio.sleep, clock=time.monotonic) -> BatchReport

``documents`` is any iterable of raw documents (mappings, as the batch file holds them): the
lesson's list of 120, or a batch read as a stream (:class:`batchlab.batchstream.BatchStream`,
what ``batchlab run`` hands over), which also has ``len()``, knows each entry's position
(``entries(start=...)``) and can tell whether its file changed (``fingerprint(byte)``), so a
processor may keep a global offset (全局 offset) and seek past a finished prefix on resume.
Iterating it reads the file again, one document at a time: pull documents through a bounded
window (分批窗口) and memory does not depend on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # names for the Protocols' signatures only: the contract stays cheap to import
    from pathlib import Path

    from .documents import Document
    from .sink import SinkRecord

PENDING = "pending"
PROCESSING = "processing"
DONE = "done"
DEGRADED = "degraded"
FAILED = "failed"
STATES = (PENDING, PROCESSING, DONE, DEGRADED, FAILED)
#: States a document does not leave within a run.
TERMINAL_STATES = (DONE, DEGRADED, FAILED)


@dataclass(frozen=True)
class BatchConfig:
    """Run settings. Delays are in seconds; ``max_attempts`` counts the first call too.

    ``backoff(attempt) = min(max_delay, base_delay * 2**attempt) + uniform(0, jitter)``
    for ``attempt`` = 0, 1, 2 ... (the wait after the first, second ... failure).

    The circuit breaker (熔断), shared by the whole batch: it opens after
    ``breaker_failures`` consecutive transient failures (0 turns it off), lets one
    probe call through ``breaker_cooldown`` seconds later (half-open), and closes
    when the probe succeeds. While it is open, a call waits instead of spending
    its retry budget; after waiting ``breaker_max_wait`` seconds in all, its
    document takes the degraded path. ``call_timeout`` is the deadline of one
    service call (``asyncio.timeout``; 0 for none): a stuck call is cancelled
    and retried as a transient failure.
    """

    concurrency: int = 8
    max_attempts: int = 4
    base_delay: float = 0.02
    max_delay: float = 0.5
    jitter: float = 0.02
    layer: str = "chunks"
    shard: str | None = None
    #: 后续标记待补 (backfill): on a resume, ``degraded`` keys go through the full path once more (the
    #: service is healthy again) and their full output replaces the degraded one; every other key is still skipped.
    backfill: bool = False
    breaker_failures: int = 5
    breaker_cooldown: float = 0.25
    breaker_max_wait: float = 10.0
    call_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.jitter) < 0:
            raise ValueError("delays must not be negative")
        if self.breaker_failures < 0:
            raise ValueError("breaker_failures must not be negative (0 turns the breaker off)")
        if self.breaker_cooldown <= 0:
            raise ValueError("breaker_cooldown must be positive")
        if self.breaker_max_wait < 0 or self.call_timeout < 0:
            raise ValueError("breaker_max_wait and call_timeout must not be negative (call_timeout 0: no deadline)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Progress(Protocol):
    """Called on every state change: ``progress(doc_id, state, error=None, attempts=0)``."""

    def __call__(self, doc_id: str, state: str, *, error: str | None = None, attempts: int = 0) -> None: ...


def no_progress(doc_id: str, state: str, *, error: str | None = None, attempts: int = 0) -> None:
    """The default :class:`Progress`: report nothing."""


class Service(Protocol):
    """The external embedding service (the harness gives :class:`batchlab.service.SimulatedService`).

    ``await service.embed(doc, chunk, text)`` embeds chunk number ``chunk`` of ``doc``;
    it raises ``TransientServiceError`` (retry it) or ``PermanentServiceError`` (do not).
    """

    async def embed(self, doc: Document, chunk: int, text: str) -> list[float]: ...


class Sink(Protocol):
    """The output store (the harness gives :class:`batchlab.sink.SqliteSink`).

    ``put`` is an idempotent upsert, durable when it returns, and returns how many
    times the key has now been executed (more than 1: the work was redone). A full
    output written over a committed degraded one is an upgrade (a backfill): it
    replaces the output and is not counted as a redo.
    """

    def put(self, key: str, doc: Document, chunks: Sequence[str], vectors: Sequence[Sequence[float]],
            *, mode: str = "full") -> int: ...

    def get(self, key: str) -> SinkRecord | None: ...

    def __contains__(self, key: object) -> bool: ...

    def keys(self) -> Set[str]: ...


class CheckpointRecord(Protocol):
    """What the checkpoint knows about one key, as the harness reads it (read-only)."""

    @property
    def key(self) -> str: ...

    @property
    def doc_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def attempts(self) -> int: ...

    @property
    def last_error(self) -> str | None: ...


class CheckpointStore(Protocol):
    """The checkpoint store the student writes in step 01, by shape.

    Built as ``CheckpointStore(state_dir, batch_id, shard=None)``; see the student
    module's docstring for what each method must guarantee (durability, namespaces,
    cost). :class:`batchlab.testing.MemoryCheckpointStore` is an in-memory one.
    """

    def get(self, key: str) -> CheckpointRecord | None: ...

    def transition(self, key: str, state: str, *, doc_id: str = "",
                   error: str | None = None) -> CheckpointRecord: ...

    def entries(self) -> Mapping[str, CheckpointRecord]: ...

    def close(self) -> None: ...


class CheckpointStoreFactory(Protocol):
    """How a checkpoint store is opened: the student's class itself, or a double's."""

    def __call__(self, state_dir: str | Path, batch_id: str, shard: str | None = None) -> CheckpointStore: ...


@dataclass
class BatchReport:
    """What a processor says about one run (one pass) of a batch.

    Counts of states (``done``, ``degraded``, ``failed``) describe the whole
    batch as the checkpoint sees it at the end of the run, earlier passes
    included; ``executed``, ``skipped``, ``retries``, the timings and the
    latencies describe this run only.

    Rates, with N = ``total`` documents, U = ``unique`` valid keys, R = ``rejected``:
    ``completion_rate = (done + degraded) / U``, ``fail_rate = (failed + R) / N``
    where ``failed`` counts valid keys that ended failed, and
    ``duplicate_rate = sum(executions - 1 for keys executed more than once) / U``.

    ``upgraded`` counts the keys this run took from a committed ``degraded`` output to a
    ``full`` one (a backfill, ``BatchConfig.backfill``): an upgrade is new work, not a
    duplicate execution, so it is never in ``duplicate_executions``.
    ``checkpoint_hit_rate`` is the share of the valid keys this run found finished (in the
    checkpoint or the sink: ``skipped + recovered``) and did not run again:
    ``(skipped + recovered) / unique`` (0.0 on a first run, and when ``unique`` is 0).

    A run that resumed from a global offset (``offset_index`` > 0) reports the whole batch all the
    same: the entries below the offset count in ``total``, their keys in ``unique`` and ``skipped``.
    ``latencies_s`` holds one float per executed document, in any sequence of floats: a list (about 32
    bytes a value: 32 MB for a million, the one figure of the report that grows with the batch) or, as
    the reference keeps it, an ``array('d')`` (8 bytes a value). Only its length and percentiles are read.
    """

    batch_id: str
    total: int = 0
    unique: int = 0
    rejected: int = 0
    duplicates_in_input: int = 0
    done: int = 0
    degraded: int = 0
    failed: int = 0
    executed: int = 0
    skipped: int = 0
    recovered: int = 0
    retries: int = 0
    duplicate_executions: int = 0
    upgraded: int = 0
    checkpoint_hit_rate: float = 0.0
    resume_time_s: float | None = None
    wall_time_s: float = 0.0
    latencies_s: Sequence[float] = field(default_factory=list)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    #: The input entry this run started reading from (全局 offset: every entry below it was finished and is
    #: counted without being read); 0 when it read the batch from its first entry.
    offset_index: int = 0
    #: What the processor wants a reader of the report to know (for example: a global offset it did not trust).
    notes: list[str] = field(default_factory=list)

    @property
    def completion_rate(self) -> float:
        return (self.done + self.degraded) / self.unique if self.unique else 1.0

    @property
    def fail_rate(self) -> float:
        return (self.failed + self.rejected) / self.total if self.total else 0.0

    @property
    def duplicate_rate(self) -> float:
        return self.duplicate_executions / self.unique if self.unique else 0.0

    @property
    def throughput_docs_per_min(self) -> float:
        return 60.0 * self.executed / self.wall_time_s if self.wall_time_s > 0 else 0.0

    @property
    def latency_p50_s(self) -> float | None:
        return percentile(self.latencies_s, 50)

    @property
    def latency_p95_s(self) -> float | None:
        return percentile(self.latencies_s, 95)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data["latency_count"] = len(self.latencies_s)
        for name in ("completion_rate", "fail_rate", "duplicate_rate", "throughput_docs_per_min",
                     "latency_p50_s", "latency_p95_s"):
            data[name] = getattr(self, name)
        return data


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation, as numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
