"""What a batch's ledger says about its progress, folded event by event.

The ledger is the one source of truth (docs/design.md, Metrics): the counts, the
retries, the latest failures and the resource samples a client sees come from
it, never from the processor's own report. :class:`Progress` reads only the
lines appended since its last call (:class:`batchlab.runner.LedgerTail`), so a
hundred polls of a running batch cost a hundred small reads, not a hundred
full parses; the metrics against the thresholds (which need the sink too) stay
with :func:`batchlab.metrics.metrics_for_run`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..inventory import iter_entries
from ..ledger import PASS_OVER, RESOURCE_EVENT
from ..runner import LedgerTail

#: Ledger events a client is told about one by one (the rest only move the counts).
NOTABLE = frozenset({"pass_start", "pass_end", "crash", "kill", "stop", "stopped", "timeout", "student_error",
                     "input_error"})
DOC_STATES = ("pending", "processing", "done", "degraded", "failed")
#: How many notable events, failures and resource samples are kept for late clients.
KEEP = 300


class Progress:
    """The incremental fold of one batch's ledger (thread-safe: the HTTP layer and the runner read it)."""

    def __init__(self, documents: Iterable[Any], ledger: Path) -> None:
        """``documents``: the batch's raw entries, a stream (:class:`batchlab.batchstream.BatchStream`) or a list.

        Read once, one entry at a time (the input itself is not kept); what is kept is the API's table, one
        row per unique document and per rejected entry, whose size the upload limit bounds.
        """
        self._lock = threading.Lock()
        self._tail = LedgerTail(ledger)
        self.total = 0
        self.ident_of_id: dict[str, str] = {}
        self.docs: dict[str, dict[str, Any]] = {}  # ident -> the document's row (the first document of each ident)
        self.rejected: list[dict[str, Any]] = []
        for e in iter_entries(documents):
            self.total += 1
            doc = e.document
            if doc is not None and e.ident is not None:
                if e.ident not in self.docs:
                    self.docs[e.ident] = {"doc_id": doc.id, "state": "pending", "attempts": 0, "calls": 0,
                                          "retries": 0, "last_error": None, "passes": []}
                    self.ident_of_id.setdefault(doc.id, e.ident)
            elif e.error is not None:
                self.rejected.append({"index": e.index, "doc_id": None if e.raw_id is None else str(e.raw_id),
                                      "state": "rejected", "last_error": e.error.code, "reason": e.error.message,
                                      "hints": e.error.hints})
        self.retries = 0
        self.events: list[dict[str, Any]] = []  # notable events, with their sequence number ``seq``
        self.resources: list[dict[str, Any]] = []
        self.failures: deque[dict[str, Any]] = deque(maxlen=20)
        self.pass_no = 0
        self.pass_started: float | None = None
        self.pass_commits = 0
        self.worker_pid: int | None = None
        self.last_t: float | None = None
        self._seq = 0

    # -- folding ------------------------------------------------------------------------

    def update(self) -> None:
        """Fold the events appended since the last call."""
        with self._lock:
            for ev in self._tail.read_new():
                self._fold(ev)

    def _fold(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("ev")
        t = ev.get("t") if isinstance(ev.get("t"), (int, float)) else None
        self.last_t = t if t is not None else self.last_t
        row = self._row(ev)
        if kind == "pass_start":
            self.pass_no = int(ev.get("pass", 0) or 0)
            self.pass_started = float(ev.get("t0") or t or time.time())
            self.pass_commits = 0
            self.worker_pid = ev.get("pid") if isinstance(ev.get("pid"), int) else None
        elif kind == "call_start" and row is not None:
            row["calls"] += 1
            if int(ev.get("attempt", 1) or 1) > 1:
                row["retries"] += 1
                self.retries += 1
        elif kind == "call_fail" and row is not None:
            row["last_error"] = str(ev.get("error"))
        elif kind == "sink_put" and row is not None:
            row["state"] = "degraded" if ev.get("mode") == "degraded" else "done"
            self.pass_commits += 1
        elif kind == "state" and row is not None:
            state = str(ev.get("state"))
            if state == "processing":
                row["attempts"] += 1
            if state in DOC_STATES and not (state == "processing" and row["state"] in ("done", "degraded")):
                row["state"] = state
            if ev.get("error"):
                row["last_error"] = str(ev.get("error"))
            if state == "failed":
                self.failures.append({"doc_id": row["doc_id"], "error": row["last_error"], "t": t,
                                      "pass": ev.get("pass")})
        elif kind == RESOURCE_EVENT:
            self.resources.append(self._numbered(ev))
            del self.resources[:-KEEP]
        if kind in PASS_OVER:
            self.worker_pid = None  # that worker is gone (or going): never hand out a dead pid
        if kind in NOTABLE:
            self.events.append(self._numbered(ev))
            del self.events[:-KEEP]
        if row is not None and ev.get("pass") not in row["passes"] and kind in ("call_start", "state"):
            row["passes"].append(ev.get("pass"))

    def _row(self, ev: Mapping[str, Any]) -> dict[str, Any] | None:
        ident = ev.get("ident")
        if isinstance(ident, str) and ident in self.docs:
            return self.docs[ident]
        doc_id = ev.get("doc_id")
        if isinstance(doc_id, str) and doc_id in self.ident_of_id:
            return self.docs[self.ident_of_id[doc_id]]
        return None

    def _numbered(self, ev: Mapping[str, Any]) -> dict[str, Any]:
        self._seq += 1
        keep = {k: v for k, v in ev.items() if k not in ("traceback", "report", "left_in_flight")}
        return {**keep, "seq": self._seq}

    # -- reading ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = {state: 0 for state in DOC_STATES}
        for row in self.docs.values():
            counts[row["state"]] += 1
        counts["rejected"] = len(self.rejected)
        return counts

    def snapshot(self, *, running: bool) -> dict[str, Any]:
        """Counts per state, processed / total, throughput and ETA of the pass running now."""
        self.update()
        with self._lock:
            counts = self.counts()
            unique = len(self.docs)
            processed = counts["done"] + counts["degraded"] + counts["failed"]
            left = unique - counts["done"] - counts["degraded"]
            elapsed = max((self.last_t or 0.0) - self.pass_started, 0.0) if self.pass_started else 0.0
            if running and self.pass_started:
                elapsed = max(time.time() - self.pass_started, 0.0)
            rate = self.pass_commits / elapsed if elapsed > 0 else 0.0
            eta = left / rate if running and rate > 0 else (0.0 if left == 0 else None)
            return {
                "total": self.total, "unique": unique, "counts": counts, "processed": processed,
                "completed": counts["done"] + counts["degraded"], "retries": self.retries,
                "pass": self.pass_no, "pass_elapsed_s": round(elapsed, 3),
                "throughput_docs_per_min": round(60.0 * rate, 1), "eta_s": None if eta is None else round(eta, 1),
                "latest_failures": list(self.failures)[-5:], "worker_pid": self.worker_pid if running else None,
                "resource": self.resources[-1] if self.resources else None,
            }

    def since(self, events_seq: int, resources_seq: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Notable events and resource samples numbered after the given sequence numbers."""
        self.update()
        with self._lock:
            return ([e for e in self.events if e["seq"] > events_seq],
                    [r for r in self.resources if r["seq"] > resources_seq])

    def documents(self, state: str | None = None) -> list[dict[str, Any]]:
        """Each document with its state, attempts and last error (``state`` filters; ``rejected`` too)."""
        self.update()
        with self._lock:
            rows = [{"ident": ident, **row, "passes": list(row["passes"])} for ident, row in self.docs.items()]
            rows += [dict(r) for r in self.rejected]
        return [r for r in rows if state is None or r["state"] == state]
