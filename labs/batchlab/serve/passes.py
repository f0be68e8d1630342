"""One pass of a served batch: its run spec, the worker run under the run-directory lock, what it ended as.

Apart from :mod:`.manager` (the states, the queue, the threads) because this is what happens *inside*
one of its threads, the same steps as ``batchlab run``: the spec from the batch's settings, the next
pass number from the ledger (a restarted server goes on where the last one stopped), the planned crash
on the first pass only, a :class:`batchlab.resources.ResourceSampler` beside the worker, and the
batch's state afterwards, in words a client can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..contract import BatchConfig
from ..faults import CrashPlan, FaultPlan
from ..ledger import PASS_OVER, iter_events
from ..resources import ResourceSampler
from ..rundir import RunDir
from ..runlock import RunDirLock
from ..runner import PassResult, RunSpec, prepare, run_pass
from ..service import LatencyModel
from .progress import Progress
from .store import CANCELLED, COMPLETED, FAILED, INTERRUPTED, BatchRecord, Store

#: Stop requests: a client's cancel, and the server's own shutdown (which leaves the batch interrupted).
STOP_CANCEL = "cancel"
STOP_SHUTDOWN = "shutdown"


def batch_spec(rec: BatchRecord, store: Store, *, timeout_s: float, lock_wait_s: float) -> RunSpec:
    """The run spec of a stored batch, from its settings."""
    s = rec.settings
    return RunSpec(impl=Path(rec.impl), input=store.input_path(rec.id), run_dir=store.run_dir(rec.id),
                   batch_id=rec.name, config=BatchConfig(concurrency=s.concurrency),
                   plan=FaultPlan(seed=s.seed, transient_rate=s.fault_rate),
                   latency=LatencyModel(median_ms=s.latency_ms), timeout_s=timeout_s, lock_wait_s=lock_wait_s)


def run_batch_pass(spec: RunSpec, rec: BatchRecord, *, stop: Callable[[], str | None],
                   lock_wait_s: float) -> PassResult:
    """Run the batch's next pass to its end, sampled, under the run-directory lock (raises ``RunDirBusyError``)."""
    ledger = RunDir(spec.run_dir).ledger
    pass_no = 1 + max((int(e.get("pass", 0) or 0) for e in iter_events(ledger)), default=len(rec.passes))
    kind = rec.settings.crash if pass_no == 1 else "none"
    crash = CrashPlan(kind=kind, at=rec.settings.at if kind != "none" else 0)
    seen: dict[str, Any] = {"pid": None, "over": False}

    def on_events(events: list[dict[str, Any]]) -> None:
        for ev in events:
            if ev.get("ev") == "pass_start" and int(ev.get("pass", 0)) == pass_no:
                seen["pid"] = ev.get("pid")
            elif ev.get("ev") in PASS_OVER:
                seen["over"] = True

    with RunDirLock(spec.run_dir, role="batchlab serve").acquire(lock_wait_s) as lock:
        prepare(spec)
        sampler = ResourceSampler(spec.run_dir, pass_no, lambda: seen["pid"], lambda: bool(seen["over"]))
        sampler.start()
        try:
            return run_pass(spec, pass_no, crash, lock=lock, stop=stop, on_events=on_events)
        finally:
            sampler.stop()


def pass_outcome(result: PassResult, progress: Progress, *, timeout_s: float) -> tuple[str, str | None]:
    """The batch's state after a pass, and why, in words."""
    counts = progress.counts()
    left = sum(counts[s] for s in ("pending", "processing", "failed"))
    if result.stopped_by == STOP_CANCEL:
        return CANCELLED, f"cancelled by a client; {left} document(s) left; resume it to go on"
    if result.stopped_by == STOP_SHUTDOWN:
        return INTERRUPTED, f"the server stopped; {left} document(s) left; resume it to go on"
    if result.timed_out:
        return FAILED, f"the pass timed out after {timeout_s:g} s"
    if result.returncode == 0:
        return COMPLETED, (f"{counts['failed']} document(s) failed; retry-failed gives them another pass"
                           if counts["failed"] else None)
    if result.returncode in (2, 3, 4):
        errors = [e for e in progress.events if e.get("ev") in ("student_error", "input_error")]
        detail = str(errors[-1].get("error")) if errors else result.stdout.strip()[-500:] or result.outcome
        return FAILED, f"the worker ended with {result.outcome}: {detail}"
    return INTERRUPTED, f"the worker was {result.outcome}; {left} document(s) left; resume it to go on"
