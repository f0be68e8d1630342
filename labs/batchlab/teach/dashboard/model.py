"""The teacher dashboard's model: state and actions in plain Python, no widgets (docs/design.md, principle 6).

The dashboard shows one batch on a projector while it runs: first run, a crash,
the resume, and the metrics against the lesson's thresholds. Everything it
shows comes from the same places the grader reads:

* the worker is a real child process (:func:`batchlab.runner.start_pass`), so
  *Crash now* is a real ``SIGKILL`` of the worker's process group, never of the
  kernel that runs the notebook;
* live figures are folded from the ledger as it grows
  (:class:`batchlab.runner.LedgerTail`), never from the processor's memory;
* the metrics are :func:`batchlab.metrics.metrics_for_run` at the end of each
  pass, checked against :data:`batchlab.thresholds.THRESHOLDS`.

The dashboard's vocabulary (settings, phases, :class:`~.board.Snapshot`, the
:class:`~.board.StateBoard` fold) is in :mod:`.board`; one batch's passes in worker processes in
:mod:`.passes`; this module is the buttons over them.
:class:`DashboardModel` never blocks: ``run()`` and ``resume()`` start a worker
and return; ``poll()`` reads what happened since the last call and returns an
immutable :class:`Snapshot`, which is all a view needs. A view (the ipywidgets
one in :mod:`batchlab.teach.dashboard.view`, or a test) calls ``poll()`` from a background
thread while button clicks call the actions from the kernel's thread, so every
public method takes the model's lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...backfill import backfill_spec, require_backfillable
from ...documents import load_batch
from ...examples import make_documents, write_input
from ...faults import CrashPlan
from ...host import require_supported_platform
from ...metrics import Metrics, metrics_for_run
from ...rundir import RunDir
from ...runner import LivePass, RunSpec, prepare
from .board import (
    ERROR,
    FINISHED,
    IDLE,
    KILLED,
    MANUAL_KILL,
    RUNNING,
    DashboardError,
    DashboardSettings,
    Marker,
    MetricRow,
    PassInfo,
    Snapshot,
    StateBoard,
    metric_rows,
)
from .passes import BatchPasses
from .scratch import close_at_exit, new_run_dir, remove_run_dir
from .timeline import Timeline

require_supported_platform()  # native Windows: the teacher demo's first cell stops here with the unified error


class DashboardModel:
    """One batch on the dashboard: Run, Crash now, Resume, Reset, and ``poll()`` for what happened.

    ``impl`` is the implementation file (default: the reference where the kit
    has it, else the student module). ``runs_dir`` is where run directories go;
    by default each run gets a temporary directory that Reset and close remove.
    ``timeout_s`` bounds every pass: a hanging worker is killed, never waited for.
    """

    def __init__(
        self,
        *,
        impl: str | Path | None = None,
        settings: DashboardSettings | None = None,
        runs_dir: str | Path | None = None,
        timeout_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from ...paths import default_demo_impl

        self.impl = Path(impl) if impl is not None else default_demo_impl()
        self.settings = (settings or DashboardSettings()).validate()
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.RLock()
        self._clear()
        close_at_exit(self)

    # -- internal state ----------------------------------------------------------------

    def _clear(self) -> None:
        self._run_dir: Path | None = None
        self._owned_dir: Path | None = None
        self._spec: RunSpec | None = None
        self._batch: BatchPasses | None = None  # the batch's passes, from Run to Reset
        self._timeline = Timeline(None, t_start=None, clock=self._clock)
        self._phase = IDLE
        self._message = "按 Run 开始 (press Run to start)"

    @property
    def _live(self) -> LivePass | None:
        return self._batch.live if self._batch is not None else None

    @property
    def live(self) -> bool:
        """A worker process is running."""
        with self._lock:
            return self._live is not None

    @property
    def run_dir(self) -> Path | None:
        return self._run_dir

    @property
    def worker_pid(self) -> int | None:
        with self._lock:
            return self._live.proc.pid if self._live is not None else None

    @property
    def metrics(self) -> Metrics | None:
        """The full metrics of the run after the last pass that ended (None before)."""
        return self._batch.metrics if self._batch is not None else None

    def configure(self, **changes: Any) -> DashboardSettings:
        """Change settings (the view's sliders call this); they apply at the next Run."""
        with self._lock:
            self.settings = replace(self.settings, **changes).validate()
            return self.settings

    # -- actions ---------------------------------------------------------------------

    def run(self) -> Snapshot:
        """Start a new batch (pass 1, with the chosen crash kind); an earlier batch is dropped first."""
        with self._lock:
            settings = self.settings.validate()
            self._drop()
            self._clear()
            run_dir, self._owned_dir = new_run_dir(self.runs_dir)
            self._run_dir = run_dir
            source = write_input(RunDir(run_dir).input, make_documents(settings.documents, seed=settings.seed))
            # A list on purpose: the board draws one row per document and places the crash by planned calls, on
            # a batch it generated itself, 1-5000 documents (DashboardSettings.validate refuses more); load_batch's
            # own limit (batch_too_large) would refuse a larger file with the unified error all the same.
            batch = load_batch(source)
            self._spec = settings.run_spec(self.impl, batch, run_dir, timeout_s=self.timeout_s)
            prepare(self._spec)  # a new directory: the input is already in it
            self._timeline = Timeline(batch, t_start=self._clock(), clock=self._clock)
            self._batch = BatchPasses(self._spec, run_dir, self._timeline, self._clock)
            self._start(settings.crash_plan(batch))
            return self.snapshot()

    def crash_now(self) -> int:
        """SIGKILL the running worker (its process group), now. Returns the killed pid."""
        with self._lock:
            live = self._live
            if live is None:
                raise DashboardError("no worker is running: nothing to crash", code="not_running",
                                     hints=["Press Run (or Resume) first, then Crash now while it runs."])
            if not live.running:
                self._finish()
                raise DashboardError("the worker had already ended: nothing to crash", code="not_running",
                                     hints=["Press Resume (or Run) first, then Crash now while it runs."])
            live.kill(kind=MANUAL_KILL, by="teacher")
            self._finish()
            return live.proc.pid

    def set_outage(self, on: bool) -> Snapshot:
        """断开外部模型 / 恢复连接: take the run's service down (every call fails fast) or bring it back.

        The switch is a file in the run directory (:attr:`batchlab.rundir.RunDir.outage_switch`) that the
        worker's service reads at each call, so it acts on the running pass at once and on a resume too;
        the ledger records when the worker met each change (``outage`` events, drawn on the plot).
        """
        with self._lock:
            if self._run_dir is None:
                raise DashboardError("no batch yet: nothing to disconnect", code="no_run", hints=["Press Run first."])
            switch = RunDir(self._run_dir).outage_switch
            if on:
                switch.touch()
            else:
                switch.unlink(missing_ok=True)
            self._message = ("外部模型已断开 (outage on): calls fail fast until you reconnect" if on
                             else "连接已恢复 (outage off)")
            return self.snapshot()

    @property
    def outage(self) -> bool:
        """The run's outage switch is on."""
        return self._run_dir is not None and RunDir(self._run_dir).outage_switch.exists()

    def resume(self) -> Snapshot:
        """Start the next pass on the same batch id and state directory (no planned crash)."""
        with self._lock:
            if self._spec is None:
                raise DashboardError("nothing to resume yet", code="no_run", hints=["Press Run first."])
            if self._live is not None:
                raise DashboardError("a worker is still running", code="still_running",
                                     hints=["Wait for it to end, or press Crash now first."])
            self._start(CrashPlan())
            return self.snapshot()

    def backfill(self) -> Snapshot:
        """补齐降级文档 (backfill): one more pass that redoes the degraded documents in full, the service healthy.

        The pass runs with :func:`batchlab.backfill.backfill_spec` (``config.backfill``, no outage or permanent
        fault); a later Resume runs with the batch's own settings again. Refused while a worker runs or while
        the outage switch is on (the service is still down). With no degraded document it says so and runs no
        pass (not an error, as ``batchlab backfill``).
        """
        with self._lock:
            if self._spec is None or self._run_dir is None:
                raise DashboardError("nothing to backfill yet", code="no_run", hints=["Press Run first."])
            if self._live is not None:
                raise DashboardError("a worker is still running", code="still_running",
                                     hints=["Wait for it to end, or press Crash now first."])
            require_backfillable(self._run_dir)
            if metrics_for_run(self._run_dir).committed_degraded == 0:  # not an error: nothing to do, no pass
                self._message = "没有降级文档 (nothing to backfill): 0 degraded documents; 0 upgraded"
                return self.snapshot()
            self._start(CrashPlan(), spec=backfill_spec(self._spec))
            self._message += " · 补齐降级文档 (backfill)"
            return self.snapshot()

    def reset(self) -> Snapshot:
        """Kill any worker, forget the batch and remove its temporary run directory."""
        with self._lock:
            self._drop()
            self._clear()
            return self.snapshot()

    def close(self) -> None:
        """Reset; the model stays usable (Run starts a new batch)."""
        self.reset()

    def poll(self) -> Snapshot:
        """Read what happened since the last call (ledger events, the worker's exit) and return a snapshot."""
        with self._lock:
            ended = self._batch.step() if self._batch is not None else None
            if ended is not None:
                self._phase, self._message = ended
            return self.snapshot()

    def wait(self, timeout: float = 120.0, *, interval: float = 0.05) -> Snapshot:
        """Poll until no worker runs (for scripts and tests); raises if ``timeout`` passes first."""
        return self.wait_until(lambda s: not s.live, timeout=timeout, interval=interval)

    def wait_until(self, predicate: Callable[[Snapshot], bool], *, timeout: float = 120.0,
                   interval: float = 0.05) -> Snapshot:
        """Poll until ``predicate(snapshot)`` holds; raises :class:`DashboardError` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.poll()
            if predicate(snap):
                return snap
            if time.monotonic() > deadline:
                raise DashboardError(f"the dashboard did not reach the expected state in {timeout:g} s",
                                     code="wait_timeout", details={"phase": snap.phase, "counts": dict(snap.counts)})
            time.sleep(interval)

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        with self._lock:
            passes = self._batch
            end = self._clock() if self._live is not None else passes.t_end if passes is not None else None
            line, board = self._timeline, self._timeline.board
            elapsed = (end - line.t_start) if line.t_start is not None and end is not None else 0.0
            return Snapshot(
                phase=self._phase, pass_no=passes.pass_no if passes else 0, pid=self.worker_pid,
                run_dir=str(self._run_dir) if self._run_dir else None, counts=board.counts(),
                total=board.total, retries=board.retries, duplicates=board.duplicates,
                calls=board.calls, elapsed_s=max(elapsed, 0.0), series=tuple(line.series),
                markers=tuple(line.markers), metrics=passes.metric_rows if passes else (),
                passes=tuple(passes.passes if passes else ()),
                message=self._message, settings=self.settings, resources=line.resources, outage=self.outage)

    # -- helpers -----------------------------------------------------------------------

    def _start(self, crash: CrashPlan, *, spec: RunSpec | None = None) -> None:
        assert self._batch is not None
        self._message = self._batch.start(crash, spec=spec)
        self._phase = RUNNING

    def _finish(self) -> None:
        assert self._batch is not None
        self._phase, self._message = self._batch.finish()

    def _drop(self) -> None:
        """Kill any live worker and remove the run directory this model created."""
        if self._batch is not None:  # Reset: the batch is dropped with its directory, no event to write
            self._batch.drop()
        remove_run_dir(self._owned_dir)
        self._owned_dir = None


__all__ = [
    "DashboardError", "DashboardModel", "DashboardSettings", "Marker", "MetricRow", "PassInfo", "Snapshot",
    "StateBoard", "metric_rows", "IDLE", "RUNNING", "KILLED", "FINISHED", "ERROR", "MANUAL_KILL",
]
