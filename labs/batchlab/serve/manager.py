"""The batch manager: the service's model, plain Python (the HTTP layer in :mod:`.app` only wraps it).

Each batch runs pass after pass in its own worker process, through the same
:func:`batchlab.runner.run_pass` as ``batchlab run``: a crash of a batch kills a
process, never the server. A thread per running batch waits for its worker;
at most ``max_running`` batches run at once, the others are ``queued``.

States (like a batch API: OpenAI's Batch API, Celery Flower)::

    queued -> running -> completed | failed | interrupted | cancelled
    interrupted, cancelled --resume--> queued        completed, failed --retry-failed--> queued

``completed``: the processor finished the batch (some documents may have ended
failed: retry-failed gives them another pass). ``failed``: the batch itself
failed (the processor raised or did not import, the input was refused, a
timeout). ``interrupted``: the worker was killed, or the server stopped while it
ran. Each worker dies with the server (:func:`batchlab.lifeline.parent_link`), so a
restarted server marks every batch it finds ``running`` as ``interrupted``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..batchstream import batch_format, open_batch
from ..errors import BatchInputError
from ..paths import default_demo_impl
from ..rundir import RunDir
from ..runlock import RunDirBusyError, RunDirLock, lock_is_held
from ..runner import STOP_KILL_AFTER_S, PassResult
from .errors import BatchNotFound, RequestTooLarge, state_conflict
from .passes import STOP_CANCEL, STOP_SHUTDOWN, batch_spec, pass_outcome, run_batch_pass
from .progress import Progress
from .settings import MAX_UPLOAD_BYTES, parse_settings
from .store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUNNING,
    BatchRecord,
    PassRecord,
    Store,
    new_batch_id,
)

log = logging.getLogger("batchlab.serve")


@dataclass
class _Active:
    """A running batch: its thread and the stop request its runner polls."""

    thread: threading.Thread
    stop: str | None = None


class BatchManager:
    """Batches under a data folder: create, list, describe, resume, retry the failed, cancel."""

    def __init__(self, data_dir: str | Path, *, impl: str | Path | None = None, max_running: int = 4,
                 timeout_s: float = 3600.0, lock_wait_s: float = 1.0) -> None:
        self.store = Store(data_dir)
        self.impl = Path(impl or default_demo_impl()).resolve()
        self.max_running = max_running
        self.timeout_s = timeout_s
        self.lock_wait_s = lock_wait_s
        self._lock = threading.RLock()
        self._records: dict[str, BatchRecord] = {}
        self._progress: dict[str, Progress] = {}
        self._active: dict[str, _Active] = {}
        self._queue: list[str] = []
        self._closing = False
        self._started = False
        for rec in self.store.load_all():
            if rec.state == RUNNING:  # its worker died with the server that ran it
                rec.state, rec.reason = INTERRUPTED, ("the server stopped while the batch ran (its worker died "
                                                      "with it); resume it to go on")
                self.store.save(rec)
            elif rec.state == QUEUED:
                self._queue.append(rec.id)
            self._records[rec.id] = rec
        self._queue.sort(key=lambda i: self._records[i].created_at)
        self.store.write_index(list(self._records.values()))

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the queued batches (the server calls it once it is up)."""
        with self._lock:
            self._started, self._closing = True, False
            self._pump()

    def shutdown(self, timeout_s: float = STOP_KILL_AFTER_S + 5) -> None:
        """Stop every running worker cleanly (each batch is left ``interrupted``, resumable) and wait for them."""
        with self._lock:
            self._closing = True
            active = list(self._active.values())
            for a in active:
                a.stop = STOP_SHUTDOWN
        for a in active:
            a.thread.join(timeout_s)

    @property
    def closing(self) -> bool:
        """True once :meth:`shutdown` was called (WebSockets close, nothing new starts)."""
        return self._closing

    # -- reading -------------------------------------------------------------------------

    def record(self, batch_id: str) -> BatchRecord:
        with self._lock:
            rec = self._records.get(batch_id)
        if rec is None:
            raise BatchNotFound(f"no batch {batch_id!r}", details={"batch_id": batch_id},
                                hints=["GET /batches lists the batches this server holds."])
        return rec

    def progress(self, batch_id: str) -> Progress:
        rec = self.record(batch_id)
        with self._lock:
            prog = self._progress.get(rec.id)
            if prog is None:
                # streamed, unvalidated: create() validated this file before storing it
                prog = Progress(open_batch(self.store.input_path(rec.id), validate=False),
                                RunDir(self.store.run_dir(rec.id)).ledger)
                self._progress[rec.id] = prog
            return prog

    def records(self) -> list[BatchRecord]:
        """Every batch, newest first."""
        with self._lock:
            return sorted(self._records.values(), key=lambda r: (r.created_at, r.id), reverse=True)

    def worker_pid(self, batch_id: str) -> int | None:
        rec = self.record(batch_id)
        return self.progress(batch_id).snapshot(running=True)["worker_pid"] if rec.state == RUNNING else None

    # -- actions -------------------------------------------------------------------------

    def create(self, body: bytes, *, filename: str = "upload.json", settings: Mapping[str, Any] | None = None
               ) -> BatchRecord:
        """Validate a batch (as ``batchlab run`` does: :func:`batchlab.batchstream.open_batch`) and queue it.

        A refusal (bad settings, bad input, too large) raises the unified error and leaves nothing behind.
        An upload named ``*.jsonl`` or ``*.ndjson`` is JSON Lines (a malformed line rejects that document
        alone), any other name a JSON file. It is read as a stream, one document at a time: validated,
        then folded into the batch's :class:`Progress` (the request's body is the one copy in memory).
        """
        parsed = parse_settings(settings or {})
        if len(body) > MAX_UPLOAD_BYTES:
            raise RequestTooLarge(f"the request holds {len(body)} bytes, more than {MAX_UPLOAD_BYTES}",
                                  details={"bytes": len(body), "limit_bytes": MAX_UPLOAD_BYTES},
                                  hints=["Split the batch into shards, each with its own batch id."])
        batch_id = new_batch_id()
        fmt = batch_format(filename)
        tmp = self.store.incoming / f"{batch_id}.{fmt}"
        tmp.write_bytes(body)
        try:
            batch = open_batch(tmp)
            self.store.batch_dir(batch_id).mkdir(parents=True)
            stored = self.store.input_path(batch_id, fmt)
            tmp.replace(stored)
            batch = open_batch(stored, validate=False, documents=len(batch))  # the same file, validated above
        except BatchInputError as exc:
            if "path" in exc.details:
                exc.details["path"] = filename  # the client's name for it, not our temporary file
            raise
        finally:
            tmp.unlink(missing_ok=True)
        rec = BatchRecord(id=batch_id, name=batch.header.batch_id or batch_id, created_at=time.time(),
                          settings=parsed, impl=str(self.impl), documents=len(batch))
        with self._lock:
            self._records[rec.id] = rec
            self._progress[rec.id] = Progress(batch, RunDir(self.store.run_dir(rec.id)).ledger)
            self._enqueue(rec, None)
        return rec

    def resume(self, batch_id: str) -> BatchRecord:
        """Another pass of an interrupted or cancelled batch: it skips what is committed and does the rest."""
        with self._lock:
            rec = self.record(batch_id)
            if rec.state not in (INTERRUPTED, CANCELLED):
                raise state_conflict(rec.id, rec.state, "resume",
                                     "only an interrupted or cancelled batch can be resumed")
            self._check_free(rec)
            self._enqueue(rec, "resumed")
            return rec

    def retry_failed(self, batch_id: str) -> BatchRecord:
        """Another pass of a finished batch: its failed documents run again; rejected inputs stay rejected."""
        with self._lock:
            rec = self.record(batch_id)
            failed = self.progress(batch_id).counts()["failed"]
            if rec.state not in (COMPLETED, FAILED) or (rec.state == COMPLETED and failed == 0):
                why = ("no document failed" if rec.state == COMPLETED else
                       "only a completed batch with failed documents, or a failed batch, can be retried")
                raise state_conflict(rec.id, rec.state, "retry-failed", why)
            self._check_free(rec)
            self._enqueue(rec, f"retrying {failed} failed document(s)" if failed else "retrying the batch")
            return rec

    def cancel(self, batch_id: str, wait_s: float = STOP_KILL_AFTER_S + 5) -> BatchRecord:
        """Stop a queued or running batch (the worker stops cleanly; the batch can be resumed later)."""
        with self._lock:
            rec = self.record(batch_id)
            if rec.state == QUEUED:
                self._queue.remove(rec.id)
                self._set(rec, CANCELLED, "cancelled before it started; resume it to start it")
                return rec
            if rec.state != RUNNING:
                raise state_conflict(rec.id, rec.state, "cancel", "only a queued or running batch can be cancelled")
            active = self._active[rec.id]
            active.stop = STOP_CANCEL
        active.thread.join(wait_s)
        return rec

    # -- internals -----------------------------------------------------------------------

    def _check_free(self, rec: BatchRecord) -> None:
        if lock_is_held(self.store.run_dir(rec.id)):
            raise RunDirLock(self.store.run_dir(rec.id)).busy_error(0)

    def _set(self, rec: BatchRecord, state: str, reason: str | None) -> None:
        rec.state, rec.reason = state, reason
        if state in (COMPLETED, FAILED, CANCELLED, INTERRUPTED):
            rec.finished_at = time.time()
        self.store.save(rec)
        self.store.write_index(list(self._records.values()))

    def _enqueue(self, rec: BatchRecord, reason: str | None) -> None:
        rec.finished_at = None
        self._set(rec, QUEUED, reason)
        self._queue.append(rec.id)
        self._pump()

    def _pump(self) -> None:
        """Start queued batches while fewer than ``max_running`` run (not before :meth:`start`, not when closing)."""
        while self._started and not self._closing and self._queue and len(self._active) < self.max_running:
            rec = self._records[self._queue.pop(0)]
            self._set(rec, RUNNING, rec.reason)
            thread = threading.Thread(target=self._run, args=(rec.id,), name=f"batchlab-batch-{rec.id}",
                                      daemon=True)
            self._active[rec.id] = _Active(thread)
            thread.start()

    def _run(self, batch_id: str) -> None:
        """The thread of one pass: run it (:func:`.passes.run_batch_pass`), then record how it ended (never raises)."""
        rec = self._records[batch_id]
        active = self._active[batch_id]
        reason: str | None
        state, reason = FAILED, "the server failed to run the pass"
        result: PassResult | None = None
        started = time.time()
        try:
            spec = batch_spec(rec, self.store, timeout_s=self.timeout_s, lock_wait_s=self.lock_wait_s)
            result = run_batch_pass(spec, rec, stop=lambda: active.stop, lock_wait_s=self.lock_wait_s)
            state, reason = pass_outcome(result, self.progress(batch_id), timeout_s=self.timeout_s)
        except RunDirBusyError as exc:
            state, reason = INTERRUPTED, exc.message
        except Exception as exc:  # noqa: BLE001 - a server bug ends this batch, never the server
            log.exception("batch %s: the pass could not be run", batch_id)
            reason = f"server error: {type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                if result is not None:
                    rec.passes.append(PassRecord(pass_no=result.pass_no, outcome=result.outcome,
                                                 returncode=result.returncode, duration_s=round(result.duration_s, 3),
                                                 started_at=started, stopped_by=result.stopped_by))
                self._active.pop(batch_id, None)
                self._set(rec, state, reason)
                self._pump()
