"""Resource samples of a running batch (psutil), written to its ledger as ``resource`` events.

In the core because two rooms record them: the batch service (a sampler thread per batch) and the teacher
dashboard (a sample per poll, at most one a second); the report draws them.

About once a second while a worker runs: its CPU % (children included, 100 % is
one core), resident memory, open files, and the run directory's disk use. They
go to the ledger, like every other fact about a run, so the WebSocket, a
restarted server and any later reader see the same samples.

The sampler stops at the worker's last event (``pass_end``, ``stopped``,
``student_error``...): :func:`batchlab.metrics.compute_metrics` takes a pass's
end as the time of its last event, so a sample written after the worker finished
would stretch the pass's wall time and understate its throughput.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .ledger import RESOURCE_EVENT, append_event
from .rundir import RunDir

#: Seconds between two samples.
SAMPLE_EVERY_S = 1.0
#: The figures of one sample (besides ``worker_pid``), as the ledger's ``resource`` events carry them.
RESOURCE_FIELDS = ("cpu_percent", "rss_bytes", "open_files", "disk_bytes")


def disk_usage_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (a run directory: a few files, no deep tree)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def sample(proc: Any, run_dir: Path) -> dict[str, Any]:
    """One sample of ``proc`` (a ``psutil.Process``) and its children; raises psutil's errors when it is gone."""
    import psutil

    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.Error:
        pass
    cpu = rss = files = 0.0
    for p in procs:
        try:
            with p.oneshot():
                cpu += p.cpu_percent(interval=None)
                rss += p.memory_info().rss
                files += len(p.open_files())
        except psutil.Error:
            if p is proc:
                raise
    return {"worker_pid": proc.pid, "cpu_percent": round(cpu, 1), "rss_bytes": int(rss),
            "open_files": int(files), "disk_bytes": disk_usage_bytes(run_dir)}


class WorkerProbe:
    """psutil's view of one worker at a time, read when asked (the sampler's thread, the dashboard's poll).

    The first read of a worker only starts psutil's CPU clock and returns None (a CPU percentage needs two
    readings); a worker that is gone returns None and the next read starts over.
    """

    def __init__(self) -> None:
        self._proc: Any = None

    @property
    def primed(self) -> bool:
        """The CPU clock of the current worker runs: the next read returns a sample."""
        return self._proc is not None

    def read(self, pid: int, run_dir: Path) -> dict[str, Any] | None:
        """A sample of worker ``pid`` (with ``run_dir``'s disk use), or None (first read of it, or it is gone)."""
        import psutil

        try:
            if self._proc is None or self._proc.pid != pid:
                self._proc = psutil.Process(pid)
                self._proc.cpu_percent(interval=None)  # the first call only starts the CPU clock
                return None
            return sample(self._proc, run_dir)
        except psutil.Error:
            self._proc = None
            return None


class ResourceSampler:
    """A daemon thread sampling one pass's worker until the pass is over or :meth:`stop` is called."""

    def __init__(self, run_dir: Path, pass_no: int, pid: Callable[[], int | None],
                 over: Callable[[], bool], every_s: float = SAMPLE_EVERY_S, by: str = "server") -> None:
        self.run_dir = run_dir
        self.pass_no = pass_no
        self._pid = pid
        self._over = over
        self._every = every_s
        self.by = by
        self._stop = threading.Event()
        self.samples = 0
        self._thread = threading.Thread(target=self._loop, name=f"batchlab-sampler-{run_dir.parent.name}",
                                        daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        probe = WorkerProbe()
        while not self._stop.wait(self._every if probe.primed else 0.05):
            if self._over():
                return
            pid = self._pid()
            if pid is None:
                continue
            values = probe.read(pid, self.run_dir)
            if values is None:
                continue
            if self._over() or self._stop.is_set():
                return
            append_event(RunDir(self.run_dir).ledger, RESOURCE_EVENT, pass_no=self.pass_no, by=self.by, **values)
            self.samples += 1
