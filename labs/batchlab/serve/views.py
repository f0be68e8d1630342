"""What a client reads about a batch: a summary for lists, the full detail with metrics against the thresholds.

Plain dictionaries built from the manager's records, the ledger fold and
:func:`batchlab.metrics.metrics_for_run` (the same figures as ``batchlab
metrics``); the HTTP layer, the WebSocket and the task page all show these.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ..errors import KitError, finite
from ..metrics import Metrics, metrics_for_run
from ..rundir import RunDir
from ..thresholds import THRESHOLDS
from .manager import BatchManager
from .settings import hint_for
from .store import RUNNING, BatchRecord

#: While a batch runs, its metrics are recomputed at most this often (they read the whole sink).
METRICS_EVERY_S = 2.0
_cache: dict[str, tuple[tuple[Any, ...], float, dict[str, Any] | None]] = {}
_cache_lock = threading.Lock()


def summary(manager: BatchManager, rec: BatchRecord) -> dict[str, Any]:
    """The batch's state and counts: what a list row or a progress message shows."""
    snap = manager.progress(rec.id).snapshot(running=rec.state == RUNNING)
    return {"id": rec.id, "name": rec.name, "state": rec.state, "reason": rec.reason,
            "created_at": rec.created_at, "updated_at": rec.updated_at, "finished_at": rec.finished_at,
            "documents": rec.documents, "passes": len(rec.passes), **snap}


def metrics_view(metrics: Metrics) -> dict[str, Any]:
    """The figures, and each threshold with its value and whether it is met (green or red)."""
    checks = []
    for t, value, ok in metrics.checks(THRESHOLDS):
        # A batch that ran in one pass was never resumed: its resume time does not exist (not "failed").
        unmeasured = t.metric == "resume_time_s" and len(metrics.passes) < 2
        checks.append({"metric": t.metric, "label": t.label, "value": value, "threshold": t.text,
                       "passed": None if unmeasured else ok,
                       "note": "no resume yet: the batch ran in one pass" if unmeasured else None})
    meets = all(c["passed"] for c in checks if c["passed"] is not None)
    return finite({"summary": metrics.summary(), "checks": checks, "meets_thresholds": meets,
                   "duplicates": [d.describe() for d in metrics.duplicates], "missing": metrics.missing[:50],
                   "failure_reasons": metrics.failure_reasons})


def batch_metrics(manager: BatchManager, rec: BatchRecord) -> dict[str, Any] | None:
    """Metrics of the batch's run directory (None before its first pass), cached between changes."""
    run = manager.store.run_dir(rec.id)
    if not RunDir(run).spec.exists():
        return None
    ledger = RunDir(run).ledger
    key = (rec.state, len(rec.passes), _size(ledger), _size(RunDir(run).sink))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(rec.id)
        if hit is not None and (hit[0] == key or (rec.state == RUNNING and now - hit[1] < METRICS_EVERY_S)):
            return hit[2]
    try:
        value: dict[str, Any] | None = metrics_view(metrics_for_run(run))
    except KitError as exc:
        value = {"error": exc.to_dict()["error"]}
    with _cache_lock:
        _cache[rec.id] = (key, now, value)
    return value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def failure_reasons(manager: BatchManager, rec: BatchRecord, metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each failure reason with its count and a hint; rejected inputs with the validator's own hint."""
    rejected: dict[str, dict[str, Any]] = {}
    for row in manager.progress(rec.id).documents("rejected"):
        entry = rejected.setdefault(row["last_error"], {"reason": row["last_error"], "kind": "rejected", "count": 0,
                                                        "hint": " ".join(row["hints"]) + " Rejected input stays "
                                                        "rejected: fix it at its source and submit a new batch."})
        entry["count"] += 1
    reasons = list(rejected.values())
    counted = (metrics or {}).get("failure_reasons") or {}
    for reason, count in sorted(counted.items(), key=lambda kv: -kv[1]):
        if reason not in rejected:
            reasons.append({"reason": reason, "kind": "service", "count": count, "hint": hint_for(reason)})
    # Documents that ended failed for a reason the service's faults do not count (an exception of the
    # processor's own, say): their last error, so that every failed document has its reason on the page.
    listed = {r["reason"] for r in reasons}
    failed: dict[str, dict[str, Any]] = {}
    for row in manager.progress(rec.id).documents("failed"):
        reason = str(row.get("last_error") or "unknown")
        if reason not in listed:
            failed.setdefault(reason, {"reason": reason, "kind": "failed", "count": 0,
                                       "hint": "The document ended failed; retry-failed gives it another pass. "
                                       + hint_for(reason)})["count"] += 1
    return reasons + sorted(failed.values(), key=lambda r: -r["count"])


def detail(manager: BatchManager, batch_id: str) -> dict[str, Any]:
    """Everything about one batch: state, counts, retries, metrics against thresholds, reasons, timings."""
    rec = manager.record(batch_id)
    data = summary(manager, rec)
    metrics = batch_metrics(manager, rec)
    started = rec.passes[0].started_at if rec.passes else None
    end = rec.finished_at if rec.state != RUNNING and rec.finished_at else time.time()
    data.update(
        settings=rec.settings.to_dict(), impl=rec.impl, metrics=metrics,
        failure_reasons=failure_reasons(manager, rec, metrics),
        timings={"created_at": rec.created_at, "started_at": started, "finished_at": rec.finished_at,
                 "elapsed_s": round(end - rec.created_at, 3), "eta_s": data["eta_s"],
                 "passes": [p.__dict__ for p in rec.passes]},
        links={"self": f"/batches/{rec.id}", "documents": f"/batches/{rec.id}/documents",
               "events": f"/batches/{rec.id}/events"},
    )
    return data
