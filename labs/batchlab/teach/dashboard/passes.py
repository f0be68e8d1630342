"""The passes of one batch on the dashboard: the worker running now, its resource samples, how each pass ended.

Apart from :mod:`.model` (the buttons, the settings, the lock every action takes, the snapshot a view reads)
because this is one batch's life in worker processes, from its first pass to its last, and knows nothing of
buttons: a model makes one :class:`BatchPasses` per Run and drops it on Reset, and calls it under its lock.
The worker is a real child process (:class:`batchlab.runner.LivePass`); what it did is folded into the
model's :class:`~.timeline.Timeline` from the ledger, never from the processor's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...childproc import kill_group
from ...faults import CRASH_NONE, CrashPlan
from ...ledger import RESOURCE_EVENT, PassEnd, append_event
from ...metrics import Metrics, metrics_for_run
from ...resources import SAMPLE_EVERY_S, WorkerProbe
from ...rundir import RunDir
from ...runner import LivePass, RunSpec, prepare
from .board import MetricRow, PassInfo, ended_pass, metric_rows
from .timeline import Timeline


class BatchPasses:
    """One batch's passes: start the next one, step the running one, finish it, drop it (no event written)."""

    def __init__(self, spec: RunSpec, run_dir: Path, timeline: Timeline, clock: Callable[[], float]) -> None:
        self.spec = spec  # the batch's own settings (a backfill pass runs with another spec for its pass only)
        self.run_dir = run_dir
        self.timeline = timeline
        self._clock = clock
        self.live: LivePass | None = None  # the running pass (the runner's driver: kills, timeout, events)
        self.pass_no = 0
        self.t_end: float | None = None
        self.passes: list[PassInfo] = []
        self.metric_rows: tuple[MetricRow, ...] = ()
        self.metrics: Metrics | None = None  # the full metrics after the last pass that ended
        self._probe = WorkerProbe()  # the running worker, for its resource samples
        self._sampled_at = 0.0

    def start(self, crash: CrashPlan, *, spec: RunSpec | None = None) -> str:
        """Start the next pass with ``spec`` (default: the batch's own), written to the run directory first;
        returns the status line."""
        self.pass_no += 1
        self._probe = WorkerProbe()
        spec = spec or self.spec
        prepare(spec)  # the worker reads spec.json: a backfill's spec must not outlive its pass
        self.live = LivePass(spec, self.pass_no, crash)
        self.timeline.new_pass(self.pass_no, self.live.t0)
        crash_text = "" if crash.kind == CRASH_NONE else f", planned crash {crash.kind}" + (
            f" at {crash.at}" if crash.at else "")
        return f"pass {self.pass_no} running (pid {self.live.proc.pid}{crash_text})"

    def step(self) -> tuple[str, str] | None:
        """Fold the running pass's new events and sample its worker; once it has ended, (phase, message)."""
        live = self.live
        if live is None:
            return None
        self.timeline.fold(live.step())
        if live.running:
            self._sample(live.proc.pid, self._clock())
            return None
        return self.finish()

    def finish(self) -> tuple[str, str]:
        """The worker ended (by itself or killed): reap it, read its last events, compute the metrics."""
        live = self.live
        assert live is not None
        result, rest = live.finish()
        if live.spec is not self.spec:
            prepare(self.spec)  # a backfill's spec lived for its pass only: the run's own settings again
        self.timeline.fold(rest)
        self.live = None
        self.t_end = self._clock()
        self.passes.append(PassInfo(self.pass_no, live.proc.pid, result.outcome, round(result.duration_s, 3)))
        try:
            self.metrics = metrics_for_run(self.run_dir)
            self.metric_rows = metric_rows(self.metrics)
        except Exception:  # noqa: BLE001 - a view must survive anything a run leaves behind
            self.metrics, self.metric_rows = None, ()
        output = "" if result.end in (PassEnd.OK, PassEnd.KILLED) else " ".join(
            self._output_tail(name) for name in ("stdout", "stderr"))
        return ended_pass(result, live.proc.pid, self.timeline.board.counts(), output)

    def drop(self) -> None:
        """Kill the live worker, if any, writing no event (Reset drops the batch with its directory)."""
        if self.live is not None:
            kill_group(self.live.proc)
            self.live.proc.wait()
            self.live = None

    def _sample(self, pid: int, now: float) -> None:
        """At most once a second, a resource sample of the running worker into the ledger (as the service does).

        Not after the pass's last event: the metrics take a pass's end from its last event, so a late sample
        would stretch its wall time. The first read per worker only starts psutil's CPU clock.
        """
        if self.timeline.pass_over or now - self._sampled_at < SAMPLE_EVERY_S:
            return
        self._sampled_at = now
        values = self._probe.read(pid, self.run_dir)
        if values is not None:
            append_event(RunDir(self.run_dir).ledger, RESOURCE_EVENT, pass_no=self.pass_no, by="dashboard", **values)

    def _output_tail(self, stream: str, chars: int = 600) -> str:
        run = RunDir(self.run_dir)
        path = run.stdout(self.pass_no) if stream == "stdout" else run.stderr(self.pass_no)
        return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.exists() else ""
