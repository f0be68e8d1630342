"""Lesson 15 (批量断点续传): a checkpointed, idempotent, retrying batch document processor.

This is the one module you write. The lab kit (``batchlab``) gives you
everything around it and records every side effect, so the grader can check
what your code really did:

* ``service``: the external embedding service. ``await service.embed(doc, i, text)``
  embeds chunk ``i`` of a document. It is slow now and then, and fails with
  ``TransientServiceError`` (timeout, 503: retry it) or ``PermanentServiceError``
  (a parse failure: retrying will not help).
* ``sink``: the output store. ``sink.put(key, doc, chunks, vectors, mode=...)`` is an
  upsert, committed when it returns; ``sink.keys()`` lists every committed key.
* ``batchlab.pipeline``: cleaning, chunking and the degraded path from Lessons 11-14.

What you build, one notebook step at a time:

1. step 01, :class:`CheckpointStore`: the state machine
   ``pending -> processing -> done | failed`` (``degraded`` is a kind of done), with
   ``attempts`` and ``last_error``, kept in SQLite so that a SIGKILL at any
   instant leaves it readable (no whole-file rewrite per document).
2. step 02, :func:`make_idempotency_key`: ``source + normalized_id + content_hash + layer``.
3. step 03, :func:`backoff_delay` and :func:`make_retrying`: exponential backoff
   with jitter, a cap and a maximum number of attempts (tenacity).
4. step 04-05, :func:`process_document` and :func:`process_documents_batch`:
   document-level concurrency bounded by ``config.concurrency``, the chunks of one
   document in order, resume from the checkpoint, never redo a committed key
   (trust the sink over the checkpoint), degrade instead of blocking the batch,
   and return an honest :class:`~batchlab.contract.BatchReport`.

The order of effects for one document is the heart of the lesson (at-least-once
delivery + idempotent writes = exactly-once results):
``checkpoint processing -> service calls -> sink.put (durable) -> checkpoint done``.
A crash between the put and the checkpoint update is healed on resume because the
sink says the key is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    no_progress,
)
from batchlab.documents import Document, parse_document
from batchlab.errors import InvalidDocumentError
from batchlab.pipeline import MODE_DEGRADED, MODE_FULL, chunk_text, clean_text, degraded_chunks
from batchlab.service import PermanentServiceError, TransientServiceError

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

    Kept in ``state_dir/checkpoint_{batch_id}.sqlite``. Every :meth:`transition` is
    one small SQLite transaction, so a SIGKILL leaves either the old or the new
    state, never a torn file, and no update rewrites the whole checkpoint.
    """

    def __init__(self, state_dir: str | Path, batch_id: str, shard: str | None = None) -> None:
        self.batch_id = batch_id
        self.shard = shard or ""
        # TODO step 01: open (or create) a SQLite checkpoint in state_dir and load its entries
        raise NotImplementedError('TODO step 01: open (or create) a SQLite checkpoint in state_dir and load its entries')

    def get(self, key: str) -> CheckpointEntry | None:
        """The entry for ``key``, or None when the key was never seen (``pending``)."""
        # TODO step 01: return the entry for key, None if unknown
        raise NotImplementedError('TODO step 01: return the entry for key, None if unknown')

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
    state (jd/tenacity#93). Only transient errors are retried; after
    ``config.max_attempts`` attempts the last error is re-raised.
    """
    # TODO step 03: AsyncRetrying with stop_after_attempt, wait_exponential + wait_random, transient only
    raise NotImplementedError('TODO step 03: AsyncRetrying with stop_after_attempt, wait_exponential + wait_random, transient only')


# ---------------------------------------------------------------------------
# Steps 04-05: one document, then the whole batch
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
    service: Any,
    config: BatchConfig,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    on_call: Callable[[], None] = lambda: None,
) -> DocumentResult:
    """Clean, chunk and embed one document, its chunks strictly in order.

    Transient failures are retried with backoff; a permanent failure or an
    exhausted retry budget switches to the degraded path (clean + fixed-size
    chunks, local embedding, no service) so the batch converges.
    """
    # TODO step 04: embed chunk by chunk in order with retries; on permanent/exhausted errors degrade
    raise NotImplementedError('TODO step 04: embed chunk by chunk in order with retries; on permanent/exhausted errors degrade')


async def process_documents_batch(
    documents: Sequence[Mapping[str, Any]],
    *,
    batch_id: str,
    service: Any,
    sink: Any,
    state_dir: str | Path,
    config: BatchConfig = BatchConfig(),
    progress: Progress | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchReport:
    """Process a batch so that a crash, a restart or a flaky service loses nothing and redoes almost nothing.

    Run it again with the same ``batch_id`` and ``state_dir`` after a crash: it
    resumes, skipping every key already committed.
    """
    # TODO step 05: resume from the checkpoint, skip committed keys, bounded concurrency, honest report
    raise NotImplementedError('TODO step 05: resume from the checkpoint, skip committed keys, bounded concurrency, honest report')
