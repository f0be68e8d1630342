"""Lesson 15 (批量断点续传): a checkpointed, idempotent, retrying batch document processor.

This is the one module you write. The lab kit (``batchlab``) gives you
everything around it and records every side effect, so the grader can check
what your code really did:

* ``service``: the external embedding service (:class:`batchlab.contract.Service`).
  ``await service.embed(doc, i, text)`` embeds chunk ``i`` of a document. It is
  slow now and then, and fails with ``TransientServiceError`` (timeout, 503: retry
  it) or ``PermanentServiceError`` (a parse failure: retrying will not help).
* ``sink``: the output store (:class:`batchlab.contract.Sink`).
  ``sink.put(key, doc, chunks, vectors, mode=...)`` is an upsert, committed when it
  returns; ``sink.keys()`` lists every committed key.
* ``batchlab.pipeline``: cleaning, chunking and the degraded path from Lessons 11-14.

What you build, one notebook step at a time; ``check("<step>")`` in each notebook
(or ``batchlab check <step>``) tests exactly that step's code, and never needs a
later step:

1. step 01 ``checkpoint``, :class:`CheckpointStore`: the state machine
   ``pending -> processing -> done | failed`` (``degraded`` is a kind of done), with
   ``attempts`` and ``last_error``, kept in SQLite so that a SIGKILL at any
   instant leaves it readable, and so that one transition costs the same with
   100 entries as with 20 000 (no whole-file rewrite per transition: the
   checkpoint hot spot).
2. step 02 ``idempotency``, :func:`make_idempotency_key`:
   ``source + normalized_id + content_hash + layer``.
3. step 03 ``backoff``, :func:`backoff_delay` and :func:`make_retrying`: exponential
   backoff with jitter, a cap and a maximum number of attempts (tenacity); only
   transient errors are retried; and :class:`CircuitBreaker` (熔断): after a run of
   failures the batch stops calling a service that is down, and probes it after a
   cool-down.
4. step 04 ``concurrency``, :func:`process_document` (one document: its chunks in
   order, each call under a deadline and retried, waiting while the breaker is
   open, the degraded path when retrying cannot help) and :func:`run_bounded`
   (many documents at once, at most ``config.concurrency``).
5. step 05 ``resume``, :func:`process_documents_batch`: the batch on top of steps
   01-04: resume from the checkpoint, never redo a committed key (trust the sink
   over the checkpoint), redo only the degraded keys when ``config.backfill`` asks
   for it (后续标记待补, :func:`wants_backfill`), and
6. step 06 ``metrics``: return an honest :class:`~batchlab.contract.BatchReport`
   (written in step 05's code; ``check("metrics")`` audits it against the ledger),
   its checkpoint hit rate (检查点命中率) included.

The order of effects for one document is the heart of the lesson (at-least-once
delivery + idempotent writes = exactly-once results):
``checkpoint processing -> service calls -> sink.put (durable) -> checkpoint done``.
A crash between the put and the checkpoint update is healed on resume because the
sink says the key is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
import unicodedata
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from batchlab.contract import (
    DEGRADED,
    DONE,
    FAILED,
    PENDING,
    PROCESSING,
    BatchConfig,
    BatchReport,
    Progress,
    Service,
    Sink,
    no_progress,
)
from batchlab.documents import Document, parse_document
from batchlab.errors import InvalidDocumentError
from batchlab.pipeline import MODE_DEGRADED, MODE_FULL, chunk_text, clean_text, degraded_chunks
from batchlab.service import PermanentServiceError, TransientServiceError

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Step 01: the state machine and the checkpoint store
# ---------------------------------------------------------------------------

#: Legal moves of the state machine. ``processing -> processing`` is a resume after
#: a crash; ``degraded``/``failed -> processing`` is a later backfill or retry run.
#: ``done`` is final.
LEGAL_TRANSITIONS: Mapping[str, frozenset[str]] = {
    PENDING: frozenset({PROCESSING, FAILED}),
    PROCESSING: frozenset({PROCESSING, DONE, DEGRADED, FAILED}),
    DEGRADED: frozenset({PROCESSING}),
    FAILED: frozenset({PROCESSING, FAILED}),
    DONE: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the state machine does not allow (for example ``done -> processing``)."""


@dataclass(frozen=True)
class CheckpointEntry:
    """What the checkpoint knows about one idempotency key."""

    key: str
    doc_id: str
    state: str
    attempts: int
    last_error: str | None
    updated_at: float


class CheckpointStore:
    """The checkpoint of one batch (``checkpoint:{batch_id}``), optionally one shard of it.

    What the grader expects (``check("checkpoint")``):

    * ``state_dir`` may not exist yet: the store creates it (``mkdir(parents=True,
      exist_ok=True)``). Everything the store writes stays inside ``state_dir``.
    * ``shard`` (``None`` for a batch that is not sharded) is part of the
      checkpoint's namespace ``checkpoint:{batch_id}:{shard}``: a store sees only
      the entries of its own ``(batch_id, shard)``. :func:`process_documents_batch`
      passes ``config.shard`` here.
    * A closed and reopened store (same ``state_dir``, ``batch_id``, ``shard``)
      returns every entry as it was written.
    * A SIGKILL at any instant leaves a store that reopens with every transition
      that had returned (durable when :meth:`transition` returns).
    * The cost of one transition does not grow with the checkpoint: about the same
      with 20 000 entries as with 100 (the hot spot: rewriting a whole JSON file per
      transition makes every update cost the whole checkpoint).

    Kept in ``state_dir/checkpoint_{batch_id}.sqlite``. Every :meth:`transition` is
    one small SQLite transaction, so a SIGKILL leaves either the old or the new
    state, never a torn file, and no update rewrites the whole checkpoint.
    (An append-only log of one JSON line per transition also works.) The entries
    stay on disk: :meth:`get` is one indexed read, so the store's memory does not
    grow with the batch (a dict of every entry costs about 500 bytes a document).
    """

    def __init__(self, state_dir: str | Path, batch_id: str, shard: str | None = None) -> None:
        self.batch_id = batch_id
        self.shard = shard or ""
        # TODO step 01: create state_dir if missing, open a SQLite checkpoint there (entries stay on disk)
        raise NotImplementedError('TODO step 01: create state_dir if missing, open a SQLite checkpoint there (entries stay on disk)')

    def get(self, key: str) -> CheckpointEntry | None:
        """The entry for ``key``, or None when the key was never seen (``pending``)."""
        # TODO step 01: return the entry for key, None if unknown (one indexed read: no copy in memory)
        raise NotImplementedError('TODO step 01: return the entry for key, None if unknown (one indexed read: no copy in memory)')

    def transition(self, key: str, state: str, *, doc_id: str = "", error: str | None = None) -> CheckpointEntry:
        """Move ``key`` to ``state`` durably; raise :class:`IllegalTransition` for an illegal move.

        Entering ``processing`` counts one more attempt; ``error`` becomes ``last_error``.
        """
        # TODO step 01: check the move against LEGAL_TRANSITIONS, count attempts, write one row
        raise NotImplementedError('TODO step 01: check the move against LEGAL_TRANSITIONS, count attempts, write one row')

    def entries(self) -> dict[str, CheckpointEntry]:
        """Every known entry, by key."""
        # TODO step 01: return all entries by key
        raise NotImplementedError('TODO step 01: return all entries by key')

    def counts(self) -> Counter[str]:
        """How many keys are in each state."""
        return Counter(entry.state for entry in self.entries().values())

    def close(self) -> None:
        # TODO step 01: close the database
        raise NotImplementedError('TODO step 01: close the database')

    def group(self, *, every: int = 0, window_s: float = 0.0) -> MarkGroup:
        """组提交 (group commit), optional and given: transitions inside ``with store.group() as g:`` share a transaction.

        Not part of step 01 and never graded: the reference's step 05 uses it (through
        :func:`grouped`) for the marks a kill may lose because the sink heals them. It works for a
        store whose ``self._conn`` is a ``sqlite3`` connection in autocommit mode
        (``isolation_level=None``), as the reference's; any other store raises
        ``NotImplementedError`` here and keeps committing each transition alone. Inside the group a
        :meth:`transition` is NOT durable when it returns: ``g.tick()`` (one finished entry)
        commits once ``every`` entries or ``window_s`` seconds have gathered, ``g.commit()`` at
        once, and leaving the group commits the rest.
        """
        conn = getattr(self, "_conn", None)
        if not isinstance(conn, sqlite3.Connection) or conn.isolation_level is not None:
            raise NotImplementedError("group commit needs self._conn, a sqlite3 connection with isolation_level=None")
        return MarkGroup(conn, every=every or GROUP_EVERY, window_s=window_s or GROUP_WINDOW_S)


#: 组提交 (group commit): the marks of at most this many finished input entries share one commit ...
GROUP_EVERY = 256
#: ... and at most this many seconds of them (whichever comes first; and at the end of the run).
GROUP_WINDOW_S = 0.05


class MarkGroup:
    """组提交 (group commit) of checkpoint marks over one SQLite connection (given: not a step to write).

    One transition in its own transaction is a commit per mark: the checkpoint hot spot of a fast
    batch (two marks a document, each a write of the WAL and a round of file locks). Inside a group
    the marks are written into one open transaction (``BEGIN IMMEDIATE``, reopened after each commit:
    the checkpoint's write lock is held for the group's life, so only a store no other process writes
    may group), committed by :meth:`tick` once ``every`` entries have finished or ``window_s`` seconds
    have passed (checked at each tick), by :meth:`commit`, and when the group ends. A SIGKILL loses
    at most the marks since the last commit: safe only for marks the sink makes harmless
    (:func:`run_document`).
    """

    def __init__(self, conn: sqlite3.Connection | None, *, every: int = GROUP_EVERY,
                 window_s: float = GROUP_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._conn, self.every, self.window_s, self._clock = conn, every, window_s, clock
        self.marks = 0
        self.commits = 0
        self._since = clock()

    def __enter__(self) -> MarkGroup:
        self._begin()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("COMMIT")  # every mark written is a valid one: commit them, even on an error
            self.commits += 1
        self._conn = None

    def _begin(self) -> None:
        if self._conn is not None:
            self._conn.execute("BEGIN IMMEDIATE")
        self.marks, self._since = 0, self._clock()

    def tick(self, entries: int = 1) -> None:
        """``entries`` more input entries finished (their marks written): commit when full or the window passed."""
        self.marks += entries
        if self.marks >= self.every or self._clock() - self._since >= self.window_s:
            self.commit()

    def commit(self) -> None:
        """Make every mark written so far durable now, and open the next transaction."""
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("COMMIT")
            self.commits += 1
            self._begin()


def grouped(store: CheckpointStore, shard: str | None) -> MarkGroup:
    """``store.group()`` when the store can group its marks and no other worker writes its file, else no group.

    A sharded run shares the checkpoint file with the other shards' workers: holding its write
    lock for a group's window would make them wait, so each of its marks commits at once. A store
    without ``group`` (a student's, or one that raises ``NotImplementedError``) gets a group that
    does nothing: every :meth:`CheckpointStore.transition` stays durable when it returns.
    """
    if shard is None:
        try:
            return store.group()
        except (AttributeError, NotImplementedError):
            pass
    return MarkGroup(None)


# ---------------------------------------------------------------------------
# Step 02: the idempotency key
# ---------------------------------------------------------------------------


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


def make_idempotency_key(doc: Document, layer: str = "chunks") -> str:
    """``source|normalized_id|content_hash|layer``: the same document always gets the same key.

    The id is trimmed and case-folded; the content is NFC-normalized and its
    whitespace collapsed before hashing, so formatting noise cannot make an
    unchanged document look new. Metadata (timestamps!) never enters the key.
    A different content or a different layer gives a different key.
    """
    # TODO step 02: normalize id and content, hash the content (sha256), join the four parts
    raise NotImplementedError('TODO step 02: normalize id and content, hash the content (sha256), join the four parts')


# ---------------------------------------------------------------------------
# Step 03: retry with exponential backoff and jitter
# ---------------------------------------------------------------------------


def backoff_delay(attempt: int, config: BatchConfig, rand: Callable[[], float] = random.random) -> float:
    """The wait after failure number ``attempt`` (from 0): ``min(max_delay, base * 2**attempt) + jitter``.

    ``rand`` returns a number in [0, 1); the jitter is ``rand() * config.jitter``, so
    clients that failed together do not retry together (no thundering herd).
    """
    # TODO step 03: exponential growth from base_delay, capped at max_delay, plus random jitter
    raise NotImplementedError('TODO step 03: exponential growth from base_delay, capped at max_delay, plus random jitter')


def make_retrying(
    config: BatchConfig,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    before_sleep: Callable[[RetryCallState], Any] | None = None,
) -> AsyncRetrying:
    """A fresh tenacity retrying object with the same schedule as :func:`backoff_delay`.

    Make one per call: a retrying object shared by concurrent calls mixes their
    state (jd/tenacity#93). Only transient errors (``TransientServiceError``) are
    retried; any other error is raised at once. After ``config.max_attempts``
    attempts (the first call included) the last error itself is re-raised (not
    tenacity's ``RetryError``). Each wait goes through ``await sleep(seconds)``
    (never ``asyncio.sleep`` directly, so that tests wait for nothing), and
    ``before_sleep(retry_state)``, when given, is called once before each wait:
    count retries there, not in tenacity's shared ``statistics`` (jd/tenacity#701).
    """
    # TODO step 03: AsyncRetrying with stop_after_attempt, wait_exponential + wait_random, transient only
    raise NotImplementedError('TODO step 03: AsyncRetrying with stop_after_attempt, wait_exponential + wait_random, transient only')


#: The states of :class:`CircuitBreaker`.
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpenError(Exception):
    """Raised by :meth:`CircuitBreaker.call` while the breaker is open: the call was NOT made.

    ``retry_after`` is how long to wait before asking again (the rest of the cool-down).
    ``open_for`` is how long the breaker has been open in this outage (since it opened from
    closed; a failed probe does not restart it): the batch's measure of how long the service
    has been down. It is not a service error: waiting for it costs no retry attempt.
    """

    def __init__(self, retry_after: float, open_for: float = 0.0) -> None:
        super().__init__(f"circuit open for {open_for:.3f} s: the service is presumed down; ask again in "
                         f"{retry_after:.3f} s")
        self.retry_after = retry_after
        self.open_for = open_for


class CircuitBreaker:
    """熔断 (circuit breaker): one per batch, shared by every document, so the batch stops calling a dead service.

    What the grader expects (``check("backoff")``), with ``clock`` injected:

    * ``closed``: every call goes through. ``config.breaker_failures`` *consecutive*
      transient failures (``TransientServiceError``) open it; a success resets the count.
      A permanent error is an answer from a live service: it counts as a success here.
    * ``open``: :meth:`call` raises :class:`CircuitOpenError` at once, without calling
      ``fn`` (fail fast: no traffic to a service that is down), until
      ``config.breaker_cooldown`` seconds (by ``clock()``) have passed since it opened.
    * ``half_open`` (the cool-down is over): exactly one call, the probe, goes through;
      every other call meanwhile is refused as while open. The probe's success closes
      the breaker; its transient failure opens it again for a fresh cool-down.
    """

    def __init__(self, config: BatchConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        # TODO step 03: the breaker's memory: consecutive failures, when it opened, whether a probe is out
        raise NotImplementedError("TODO step 03: the breaker's memory: consecutive failures, when it opened, whether a probe is out")

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (open, and the cool-down is over), as of ``clock()`` now."""
        # TODO step 03: closed until opened; open during the cool-down; half-open after it
        raise NotImplementedError('TODO step 03: closed until opened; open during the cool-down; half-open after it')

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` if the breaker lets it through, else raise :class:`CircuitOpenError` without calling it."""
        # TODO step 03: admit (closed, or the one probe when half-open) or refuse; then record the outcome
        raise NotImplementedError('TODO step 03: admit (closed, or the one probe when half-open) or refuse; then record the outcome')


# ---------------------------------------------------------------------------
# Step 04: one document (chunks in order, retries, degradation), many at once
# ---------------------------------------------------------------------------


@dataclass
class DocumentResult:
    """The outcome of processing one document: what to commit, and why it degraded."""

    mode: str
    chunks: list[str]
    vectors: list[list[float]]
    error: str | None = None
    retries: int = 0


async def process_document(
    doc: Document,
    *,
    service: Service,
    config: BatchConfig,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_call: Callable[[], None] = lambda: None,
    breaker: CircuitBreaker | None = None,
) -> DocumentResult:
    """Clean, chunk and embed one document, its chunks strictly in order.

    Each chunk goes through ``await service.embed(doc, index, chunk)`` once the one
    before it has its vector: never two calls of one document at once. Each call is
    retried with a fresh :func:`make_retrying` (passing ``sleep`` on, so that tests
    and the grader wait for nothing); ``retries`` counts the waits (``before_sleep``).
    A permanent failure or an exhausted retry budget switches to the degraded
    path, ``batchlab.pipeline.degraded_chunks(doc)`` (clean + fixed-size chunks,
    local embedding, no service), with ``mode="degraded"`` and a classified
    ``error`` (``"permanent:<kind>"`` or ``"retries_exhausted:<kind>"``), so the
    batch converges. Nothing here touches the checkpoint or the sink.

    ``on_call()`` is called right before every service call, retries included
    (nothing else: no argument, no return value). The batch passes a function that
    notes the time of its first call, for ``BatchReport.resume_time_s``.

    Every call has a deadline (长尾任务的饥饿与抢占): ``asyncio.timeout(config.call_timeout)``
    (none when it is 0). A call still running then is cancelled and counts as a
    transient failure (``TransientServiceError("deadline")``), retried like a timeout,
    so a stuck call cannot hold its concurrency slot forever.

    With a ``breaker`` (the batch's one :class:`CircuitBreaker`), every call goes
    through ``breaker.call``. While it is open (:class:`CircuitOpenError`), wait
    ``retry_after`` seconds through ``sleep`` and ask again with a fresh retry budget:
    waiting costs no attempt. Once the breaker has been open ``config.breaker_max_wait``
    seconds (``exc.open_for``: the outage is long), or this chunk has waited that long in all,
    give up: the document degrades with ``"retries_exhausted:circuit_open"``.
    """
    # TODO step 04: embed chunk by chunk in order with retries; on permanent/exhausted errors degrade
    raise NotImplementedError('TODO step 04: embed chunk by chunk in order with retries; on permanent/exhausted errors degrade')


async def run_bounded(items: Iterable[T], worker: Callable[[T], Awaitable[Any]], *, limit: int) -> None:
    """``await worker(item)`` for every item, at most ``limit`` at a time; return when all have finished.

    Concurrency is per document: give it one item per document and a worker that
    processes one document (its chunks stay sequential inside :func:`process_document`).
    Take the next item from ``items`` only when a slot is free, so that a generator
    of a million documents never becomes a million tasks (memory stays bounded,
    and the external service never sees more than ``limit`` documents at once).
    A worker handles its own errors: if one raises anyway, the others are
    cancelled and the error propagates (``asyncio.TaskGroup``).
    """
    # TODO step 04: take a Semaphore(limit) slot before starting each task, give it back when it ends
    raise NotImplementedError('TODO step 04: take a Semaphore(limit) slot before starting each task, give it back when it ends')


# ---------------------------------------------------------------------------
# Steps 05-06: the whole batch, resumable, and its honest report
# ---------------------------------------------------------------------------

#: How many more finished input entries before the global offset is written again (and at the end of a run).
OFFSET_EVERY = 1000
#: Seconds to wait for the input positions' write lock before reading the input from its first entry.
LOCK_WAIT_S = 2.0


class InputPositions:
    """What a run knows about its input's positions, on disk beside the checkpoint (given: not a step to write).

    Two things a batch of a million documents must not keep in memory (分批窗口: memory must not
    grow with the batch):

    * **the keys met in the input**, each with the index where it was first met: a key met
      again at a later index is a duplicate in the input (``duplicates_in_input``). It works as
      the set it replaces (``key in seen``, ``seen.add(key)``, ``len(seen)``), but the keys live in
      SQLite, not in a Python set of N strings (about 150 bytes a key);
    * **the global offset** (全局 offset, low-water mark): the input position below which every
      entry is finished, with the counts of those entries, so that a resume can seek past that
      prefix without reading, parsing or hashing it (:class:`GlobalOffset`).

    Both are written in one SQLite transaction, so an offset never names keys the table lacks.
    ``path=None`` keeps them in memory (the step tests' runs). Keys are committed in groups
    (:data:`OFFSET_EVERY`): losing the last group to a kill only costs reading them again.

    A file whose write lock another process holds (a worker paused in the middle of a group, whose
    shard was taken over: 僵尸 worker) is not waited for: the run keeps its positions in memory
    and reads its input from the first entry (``unavailable`` says why), as with no offset at all.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        #: Why the file on disk is not used ("" when it is, or when none was asked for).
        self.unavailable = ""
        self._conn = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None,
                                     timeout=LOCK_WAIT_S)
        try:
            self._open()  # takes the write lock now, or learns another process holds it
        except sqlite3.OperationalError as exc:
            self._conn.close()
            self.unavailable = f"{path} is locked by another process ({exc})"
            self._conn = sqlite3.connect(":memory:", isolation_level=None)
            self._open()
        self._count = self._conn.execute("SELECT count(*) FROM seen").fetchone()[0]
        self._unsaved = 0
        self._conn.execute("BEGIN")

    def _open(self) -> None:
        """WAL first, then the write lock and the tables in one transaction: a new file (each shard of a fleet
        makes one) costs one commit, where the lock's probe, the switch to WAL and each table took one each."""
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, first INTEGER NOT NULL) "
                           "WITHOUT ROWID")
        self._conn.execute("CREATE TABLE IF NOT EXISTS offset (id INTEGER PRIMARY KEY CHECK (id = 0), "
                           "data TEXT NOT NULL)")
        self._conn.execute("COMMIT")

    def first(self, key: str) -> int | None:
        """The index where ``key`` was first met, None if never."""
        row = self._conn.execute("SELECT first FROM seen WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def add(self, key: str, index: int = -1) -> None:
        """Note ``key`` as met at ``index``, as ``set.add`` does: a key met already keeps its first index."""
        if self.first(key) is None:
            self._insert(key, index)

    def _insert(self, key: str, index: int) -> None:
        self._conn.execute("INSERT INTO seen (key, first) VALUES (?, ?)", (key, index))
        self._count += 1
        self._unsaved += 1
        if self._unsaved >= OFFSET_EVERY:
            self.commit()

    def met_before(self, key: str, index: int) -> bool:
        """True when ``key`` was first met at an index below ``index`` (a duplicate); else note it as met here."""
        first = self.first(key)
        if first is None:
            self._insert(key, index)  # not add(): the key was just looked up
        elif first > index:  # cannot happen for an unchanged input; keep the lower index
            self._conn.execute("UPDATE seen SET first = ? WHERE key = ?", (index, key))
        return first is not None and first < index

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.first(key) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return (key for (key,) in self._conn.execute("SELECT key FROM seen").fetchall())

    def load_offset(self) -> dict[str, Any] | None:
        """The last global offset written, None if none."""
        row = self._conn.execute("SELECT data FROM offset WHERE id = 0").fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def save_offset(self, data: Mapping[str, Any]) -> None:
        """Write the global offset and commit it with every key noted so far."""
        self._conn.execute("INSERT OR REPLACE INTO offset (id, data) VALUES (0, ?)", (json.dumps(dict(data)),))
        self.commit()

    def reset(self) -> None:
        """Forget every key and the offset (the run reads its input from the first entry)."""
        self._conn.execute("DELETE FROM seen")
        self._conn.execute("DELETE FROM offset")
        self._count = 0
        self.commit()

    def commit(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.execute("BEGIN")
        self._unsaved = 0

    def close(self) -> None:
        self._conn.execute("COMMIT")
        self._conn.close()


class GlobalOffset:
    """全局 offset (low-water mark): the first input entry not yet finished, moved up as entries finish.

    Entries finish out of order (``config.concurrency`` documents run at once), so the offset is the
    lowest entry still open: ``open`` holds the entries read and not yet past the offset (at most
    the window, :func:`run_bounded`'s slots, plus those finished above a slower one). Each finished
    entry brings its counts (rejected, duplicates, done, degraded); past the offset they are added to
    ``below``, what a resumed run reports for the prefix it does not read. An entry that ends
    ``failed`` is not finished (the next run retries it): the offset stops there for this run.
    ``byte``/``line`` are where the entry at ``index`` starts to be read (the end of the one before).
    """

    def __init__(self, start: Mapping[str, Any] | None = None) -> None:
        self.index = int(start["index"]) if start else 0
        self.byte, self.line = (int(start["byte"]), int(start["line"])) if start else (0, 1)
        self.below: Counter[str] = Counter(start["counts"]) if start else Counter()
        self.open: dict[int, tuple[tuple[int, int] | None, Counter[str] | None]] = {}
        #: The keys of the documents running now, with their entry's index (at most the window).
        self.running: dict[str, int] = {}
        self.stuck = False
        #: The index last written (:func:`save_offset`).
        self.saved = self.index

    def read(self, index: int, end: tuple[int, int] | None) -> None:
        """Entry ``index`` was read; ``end`` is where the next one starts (None: a list, no positions)."""
        if not self.stuck:
            self.open[index] = (end, None)

    def finished(self, index: int, counts: Counter[str] | None) -> None:
        """Entry ``index`` is finished with ``counts`` (None: it failed; the offset stops below it)."""
        if self.stuck:
            return
        if counts is None:
            self.stuck = True
            self.open.clear()  # nothing above a failed entry can ever pass it in this run
            return
        end, _ = self.open.get(index, (None, None))
        self.open[index] = (end, counts)
        while (slot := self.open.get(self.index)) is not None and slot[1] is not None:
            del self.open[self.index]
            self.below.update(slot[1])
            if slot[0] is not None:
                self.byte, self.line = slot[0]
            self.index += 1

    def record(self, fingerprint: str, layer: str) -> dict[str, Any]:
        """What :meth:`InputPositions.save_offset` stores."""
        return {"index": self.index, "byte": self.byte, "line": self.line, "fingerprint": fingerprint,
                "layer": layer, "counts": dict(self.below)}


@dataclass
class BatchRun:
    """What one call of :func:`process_documents_batch` works with, and what it has counted so far.

    The batch is four named steps over one ``BatchRun``: :func:`classify_entry`
    decides what one raw input entry needs (with :func:`reject_entry` and
    :func:`heal_committed` for two of the answers), :func:`run_document` takes one
    document to its end, and :func:`tally` counts the states at the end.
    :func:`process_documents_batch` opens the checkpoint, builds the ``BatchRun``,
    feeds :func:`run_bounded` and writes the report.
    """

    store: CheckpointStore
    sink: Sink
    service: Service
    config: BatchConfig
    progress: Progress
    sleep: Callable[[float], Awaitable[Any]]
    clock: Callable[[], float]
    report: BatchReport
    #: The keys the sink has committed: ``key in committed`` (:class:`CommittedKeys` asks the sink, one indexed
    #: read per key, instead of holding ``sink.keys()``, a set of every key, in memory).
    committed: Container[str]
    #: The valid keys met so far in the input, with the index where each was first met (a key met again at a
    #: later index is a duplicate); on disk (:class:`InputPositions`), a set works the same for a small batch.
    seen: InputPositions = field(default_factory=InputPositions)
    #: How the valid keys met in this run ended, by state (``tally`` adds them up): counted as each key ends.
    states: Counter[str] = field(default_factory=Counter)
    #: The global offset of this run (全局 offset): which input entries are finished.
    offset: GlobalOffset = field(default_factory=GlobalOffset)
    #: ``failure_reasons``: how many documents failed or degraded for each classified reason.
    reasons: Counter[str] = field(default_factory=Counter)
    #: One value per document executed in this run (``latencies_s``): an ``array('d')``, 8 bytes a value (a list of
    #: floats holds about 32: 24 MB more at a million documents, the one part of a run that grows with the batch).
    latencies: array[float] = field(default_factory=lambda: array("d"))
    #: ``clock()`` at this run's first service call, None before it.
    first_call: float | None = None
    #: The keys this run sends through the full path again to replace their degraded output (:func:`wants_backfill`).
    backfilling: set[str] = field(default_factory=set)
    #: The batch's one circuit breaker (None when ``config.breaker_failures`` is 0).
    breaker: CircuitBreaker | None = None
    #: 组提交 (group commit) of the checkpoint's marks (:func:`grouped`; a group that does nothing by default).
    group: MarkGroup = field(default_factory=lambda: MarkGroup(None))

    def note_call(self) -> None:
        """``on_call`` for :func:`process_document`: note the time of the run's first service call."""
        if self.first_call is None:
            self.first_call = self.clock()

    def counts(self) -> Counter[str]:
        """What the run has counted so far, for :class:`GlobalOffset`'s per-entry counts."""
        return Counter({"rejected": self.report.rejected, "duplicates": self.report.duplicates_in_input,
                        DONE: self.states[DONE], DEGRADED: self.states[DEGRADED], FAILED: self.states[FAILED]})


class CommittedKeys:
    """``key in CommittedKeys(sink)`` is ``key in sink``: one indexed read, never every key in memory."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def __contains__(self, key: object) -> bool:
        return key in self.sink


def reject_entry(run: BatchRun, index: int, raw: Any, exc: InvalidDocumentError) -> None:
    """An invalid input entry: counted in ``rejected``, marked ``failed`` under ``invalid#{index}`` with its code.

    It is never counted in ``report.failed`` (that counts valid keys). A resumed pass
    finds it ``failed`` already and leaves the checkpoint as it is.
    """
    # TODO step 05: count it rejected (reason exc.code), mark invalid#{index} failed once, report progress
    raise NotImplementedError('TODO step 05: count it rejected (reason exc.code), mark invalid#{index} failed once, report progress')


def heal_committed(run: BatchRun, key: str, doc: Document, entry: CheckpointEntry | None) -> None:
    """A key the sink committed but the checkpoint does not say done: the kill fell between the two.

    Heal the checkpoint (``processing`` if it is not there yet, then ``done``, or
    ``degraded`` when the sink's record says so) and count it ``recovered``; never redo it.
    """
    # TODO step 05: mark it done/degraded as the sink's record says (via processing), count it recovered
    raise NotImplementedError("TODO step 05: mark it done/degraded as the sink's record says (via processing), count it recovered")


def wants_backfill(run: BatchRun, key: str, entry: CheckpointEntry | None) -> bool:
    """后续标记待补 (backfill): in a run with ``config.backfill``, whether ``key`` holds a degraded output to redo.

    True when the checkpoint says ``degraded``, or when it does not say done at all
    and the sink's committed record for ``key`` is degraded (a kill fell between the
    two). Never in a run without ``config.backfill``, and never for a ``done`` key.
    """
    # TODO step 05: only with config.backfill: degraded in the checkpoint, or (not done) degraded in the sink
    raise NotImplementedError('TODO step 05: only with config.backfill: degraded in the checkpoint, or (not done) degraded in the sink')


def in_shard(key: str, shard: str | None) -> bool:
    """Whether the document with this key belongs to ``shard`` (``"i/n"``: shard i of n, from 0); None owns all.

    Several workers can share one batch, each owning one shard: shard ``i/n`` owns
    the keys whose stable hash (the first 8 bytes of their sha256, never Python's
    ``hash()``, which changes with every process) is ``i`` modulo ``n``. So the
    shards ``0/n`` ... ``n-1/n`` partition any batch, every worker agrees on the
    owner of a key without talking to the others, and each shard keeps its own
    checkpoint (``CheckpointStore(..., shard=config.shard)``).
    """
    # TODO step 05: None owns every key; else parse "i/n" and compare sha256(key) mod n with i
    raise NotImplementedError('TODO step 05: None owns every key; else parse "i/n" and compare sha256(key) mod n with i')


def classify_entry(run: BatchRun, index: int, raw: Any) -> tuple[str, Document] | None:
    """What one raw input entry needs; ``(key, doc)`` when it is work to run, None when it is handled here.

    In this order: invalid (:func:`reject_entry`), another shard's (:func:`in_shard`: its own worker's),
    a duplicate of a key met earlier in the input (``duplicates_in_input``), a degraded output to redo in a
    backfill run (:func:`wants_backfill`: work to run, noted in ``run.backfilling``), ``done``/``degraded`` in
    the checkpoint (``skipped``), committed in the sink (:func:`heal_committed`), else work to run.
    """
    # TODO step 05: parse (reject invalid ones of this shard), key, skip other shards, then duplicate / done / committed / to run
    raise NotImplementedError('TODO step 05: parse (reject invalid ones of this shard), key, skip other shards, then duplicate / done / committed / to run')


async def run_document(run: BatchRun, key: str, doc: Document) -> str:
    """One document to its end: ``processing`` -> :func:`process_document` -> ``sink.put`` -> ``done``/``degraded``.

    The order is the lesson: the checkpoint says ``done`` only once the sink's write
    is durable. Returns the state the document ended in. Any exception (a poison
    document) ends it ``failed`` with the reason ``unexpected:<type>``, and the
    batch goes on.

    A backfilled key (in ``run.backfilling``) whose full path succeeded is an upgrade:
    the sink replaces its degraded output (``sink.put`` does not count it as a
    redo) and ``upgraded`` counts it. If the full path failed again, nothing is
    written (the degraded output stays; a second degraded write would be a
    duplicate) and the key goes back to ``degraded``.
    """
    # TODO step 05: processing -> process_document -> sink.put -> done/degraded; anything raised -> failed
    raise NotImplementedError('TODO step 05: processing -> process_document -> sink.put -> done/degraded; anything raised -> failed')


def finish_document(run: BatchRun, key: str) -> None:
    """After :func:`run_document`: count the state ``key`` ended in, and let the global offset pass its entry.

    One indexed read of the checkpoint per executed document (not a read of every entry at the end).
    """
    # TODO step 05: read the key's state once; count it; tell run.offset the entry finished (failed: it did not)
    raise NotImplementedError("TODO step 05: read the key's state once; count it; tell run.offset the entry finished (failed: it did not)")


def tally(run: BatchRun) -> None:
    """Count the valid keys met in the input by their state now (earlier passes included).

    Each valid key met in this run was counted as it ended (``run.states``: skipped, healed or
    run); the keys below the global offset this run started from were counted by the run that
    moved it there (``run.offset.below`` at the start). So ``done + degraded + failed == unique``:
    rejected entries are not among them.
    """
    # TODO step 05: add this run's counts by state to those of the prefix below the offset it started from
    raise NotImplementedError("TODO step 05: add this run's counts by state to those of the prefix below the offset it started from")


def positions_path(state_dir: str | Path, batch_id: str, shard: str | None) -> Path | None:
    """Where :class:`InputPositions` keeps a batch's (or shard's) keys and global offset: beside the checkpoint.

    None (keep them in memory) when the checkpoint left no ``state_dir`` (a checkpoint store kept elsewhere).
    """
    suffix = "" if shard is None else "_" + shard.replace("/", "of")
    return Path(state_dir) / f"positions_{batch_id}{suffix}.sqlite" if Path(state_dir).is_dir() else None


def is_positioned(documents: Iterable[Any]) -> bool:
    """Whether ``documents`` is a stream that knows its entries' positions (and can fingerprint its file)."""
    return callable(getattr(documents, "entries", None)) and callable(getattr(documents, "fingerprint", None))


def input_entries(documents: Iterable[Any], start: Mapping[str, Any] | None) -> Iterator[tuple[int, Any, Any]]:
    """``(index, raw, end)`` for each input entry from ``start`` (the global offset; None: the first entry).

    A batch read as a stream (:class:`batchlab.batchstream.BatchStream`: ``entries(start=...)``) gives
    each entry's position, so the offset can be written and a resume can seek past the prefix unread;
    any other iterable (a list) is read from its first entry, ``end`` None (no offset is written).
    """
    if is_positioned(documents):
        at = None if start is None else (start["index"], start["byte"], start["line"])
        for entry in documents.entries(start=at):  # type: ignore[attr-defined]
            yield entry.index, entry.raw, (entry.offset + entry.length, entry.end_line)
    else:
        yield from ((index, raw, None) for index, raw in enumerate(documents))


def resume_point(run: BatchRun, documents: Iterable[Any]) -> dict[str, Any] | None:
    """The global offset this run may start from, or None (read every entry; the markers decide).

    The offset is used only when the input is the same file (``documents.fingerprint`` at the
    offset's byte: size, modification time, the bytes around the start and the offset), with the
    same layer (other keys), and not in a backfill run that must redo degraded keys below it. A
    stale offset is forgotten with the keys noted beside it, and said in ``report.notes``.
    """
    if run.seen.unavailable:
        run.report.notes.append(f"global offset not used: {run.seen.unavailable}; every entry is read again "
                                "and the per-document markers decide")
    start = run.seen.load_offset()
    why = ""
    if start is not None:
        if not is_positioned(documents):
            why = "the input is not a file read as a stream"
        elif start.get("layer") != run.config.layer:
            why = f"it was written for the layer {start.get('layer')!r}"
        elif run.config.backfill and start["counts"].get(DEGRADED):
            why = "this backfill run redoes the degraded documents below it"
        elif documents.fingerprint(start["byte"]) != start["fingerprint"]:  # type: ignore[attr-defined]
            why = "the input file changed since it was written"
        else:
            run.report.offset_index = int(start["index"])
            return start
        run.report.notes.append(f"global offset at entry {start['index']} not used: {why}; every entry is read "
                                "again and the per-document markers decide")
    run.seen.reset()
    return None


def start_prefix(run: BatchRun) -> None:
    """Count the prefix below the global offset as a run that read it would: found finished, nothing to redo."""
    below = run.offset.below
    run.report.total += run.offset.index
    run.report.rejected += below["rejected"]
    run.report.duplicates_in_input += below["duplicates"]
    run.report.skipped += below[DONE] + below[DEGRADED]
    run.states.update({DONE: below[DONE], DEGRADED: below[DEGRADED]})


def save_offset(run: BatchRun, documents: Iterable[Any], *, final: bool = False) -> None:
    """Write the global offset when it moved :data:`OFFSET_EVERY` entries since the last write, and at the end."""
    offset = run.offset
    if not is_positioned(documents) or offset.index == offset.saved:
        return
    if final or offset.index - offset.saved >= OFFSET_EVERY:
        run.group.commit()  # the order of the layers: the marks below the offset are durable before the offset
        offset.saved = offset.index
        run.seen.save_offset(offset.record(documents.fingerprint(offset.byte), run.config.layer))  # type: ignore[attr-defined]


async def process_documents_batch(
    documents: Iterable[Mapping[str, Any]],
    *,
    batch_id: str,
    service: Service,
    sink: Sink,
    state_dir: str | Path,
    config: BatchConfig = BatchConfig(),
    progress: Progress | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchReport:
    """Process a batch so that a crash, a restart or a flaky service loses nothing and redoes almost nothing.

    Run it again with the same ``batch_id`` and ``state_dir`` after a crash: it
    resumes, skipping every key already committed. It is the named steps above,
    over one :class:`BatchRun`: :func:`classify_entry` for each input entry,
    :func:`run_document` for each one left to run (in :func:`run_bounded`), then
    :func:`tally`, and the report. What the grader expects:

    * ``documents`` is any iterable: the lesson's list, or the stream ``batchlab run`` hands over
      (:class:`batchlab.batchstream.BatchStream`). Take the next one only when a slot is free
      (:func:`run_bounded`: the batch window, 分批窗口), so memory does not depend on the batch's size.
    * ``state_dir`` may not exist yet; the checkpoint lives there:
      ``CheckpointStore(state_dir, batch_id, shard=config.shard)``.
    * With ``config.shard = "i/n"`` this call runs only the documents of shard i
      (:func:`in_shard`), so n workers (processes) can share one batch, one sink
      and one ``state_dir``, each with its own checkpoint; its report counts its
      own documents (``total`` still counts every input entry it read).
    * Each document gets its key (:func:`make_idempotency_key` with ``config.layer``);
      a key seen earlier in the input is a duplicate (``duplicates_in_input``), not
      new work. A key ``done``/``degraded`` in the checkpoint is skipped; a key the
      sink has committed (``sink.keys()``) but the checkpoint does not say done
      (killed between the two) is healed in the checkpoint, never redone.
    * For the others, in :func:`run_bounded` with ``limit=config.concurrency``:
      checkpoint ``processing`` -> :func:`process_document` -> ``sink.put`` (durable)
      -> checkpoint ``done``/``degraded``. One failing document ends ``failed`` and
      the batch goes on.
    * An invalid input entry (``parse_document`` raises ``InvalidDocumentError``) is
      *rejected*: counted in ``rejected`` (never in ``failed``), marked ``failed`` in
      the checkpoint under the key ``invalid#{index}`` with its error code.
    * ``progress(doc_id, state, error=..., attempts=...)`` on every state change.
    * The reference also keeps a global offset (全局 offset, :class:`GlobalOffset`) beside the
      checkpoint when ``documents`` is a stream: a resume seeks past the finished prefix unread
      (:func:`resume_point`), unless the file changed since (``report.notes`` says so).

    The :class:`~batchlab.contract.BatchReport` (step 06) must agree with what the
    harness recorded:

    * ``total`` input entries, ``unique`` distinct keys of valid documents,
      ``rejected`` invalid entries; ``done``/``degraded``/``failed`` count the
      *valid* keys by their state in the checkpoint at the end of the run (earlier
      passes included), so ``done + degraded + failed == unique``: rejected
      inputs are in ``rejected``, not in ``failed``.
    * ``executed`` sink writes of this run, ``duplicate_executions`` writes that
      found their key already committed (``sink.put`` returned more than 1),
      ``retries`` waits before a retried call, ``skipped`` and ``recovered``.
    * With ``config.backfill`` (后续标记待补) degraded keys run again (:func:`wants_backfill`);
      ``upgraded`` counts those committed full this time (not duplicate executions).
    * ``checkpoint_hit_rate`` (检查点命中率): the share of the valid keys this run found
      finished and did not run again, ``(skipped + recovered) / unique`` (0.0 when
      ``unique`` is 0, and on a first run, which finds nothing).
    * ``resume_time_s``: seconds from the start of this call (``clock()``) to its
      first service call (noted by ``on_call``), ``None`` when this run made no
      service call; ``wall_time_s`` the whole call.
    * ``latencies_s``: one value per document executed in this run, from its
      ``processing`` transition (first dispatch) to its ``done``/``degraded``
      transition (commit), retries included; skipped and healed documents add none.
    """
    # TODO step 05: open the checkpoint (and the input positions), run_bounded the work left (from the global offset when it still holds), tally, report
    raise NotImplementedError('TODO step 05: open the checkpoint (and the input positions), run_bounded the work left (from the global offset when it still holds), tally, report')
