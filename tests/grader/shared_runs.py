"""The grader runs of a session split over pytest-xdist workers: run once, by one worker, read by every worker.

Each xdist worker collects the whole suite, so each would start every grader run (46 runs, 10-60 s each) in its own
pool: twice the suite's largest cost. Instead the first worker to create the shared folder (``os.mkdir`` is atomic)
owns the pool (:class:`PublishedRuns`: :class:`GraderRuns` that also writes each finished run to
``<shared>/<name>/run.json``) and writes its plan (the runs it started, the ones that could not be built, its pid);
any other worker reads the runs from there (:class:`RunsFromOwner`), waiting for each as a test asks for it. A run
the owner did not plan (a test that asks for a run no collected test foresaw) is run by the worker that asks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from batchlab.host import pid_alive
from grader_runs import GraderRun, GraderRuns

PLAN = "plan.json"
RUN = "run.json"
#: How long a worker waits for one run the owner planned while the owner is alive (the pool's whole length, loaded).
WAIT_S = 3600.0


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Written whole or not at all (a reader polling for the file never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _publish(path: Path) -> Callable[[Future[GraderRun]], None]:
    def done(fut: Future[GraderRun]) -> None:
        if fut.cancelled():
            _write_json(path, {"error": "the owner's session stopped before this run started"})
        elif fut.exception() is not None:
            _write_json(path, {"error": f"the grader run raised {fut.exception()!r}"})
        else:
            run = fut.result()
            _write_json(path, {**vars(run), "impl": str(run.impl), "results_path": str(run.results_path)})
    return done


class PublishedRuns(GraderRuns):
    """The owner's pool: :class:`GraderRuns`, each finished (or dropped) run also written for the other workers."""

    def __init__(self, shared: Path, wanted: set[str]) -> None:
        super().__init__(shared, wanted=wanted)
        _write_json(shared / PLAN, {"pid": os.getpid(), "runs": sorted(self.futures),
                                    "build_errors": {n: str(e) for n, e in self.build_errors.items()}})

    def _submit(self, name: str, built: tuple[Path, list[str], Any] | None = None) -> None:
        planned = name in self.futures
        super()._submit(name, built)
        if not planned and name in self.futures:
            self.futures[name].add_done_callback(_publish(self.base / name / RUN))


class RunsFromOwner:
    """Another worker's view of the owner's runs (the same ``get`` as :class:`GraderRuns`)."""

    def __init__(self, shared: Path, local: Callable[[], GraderRuns], sleep: Callable[[float], None] = time.sleep):
        self.shared = shared
        self._local_factory = local
        self._local: GraderRuns | None = None
        self._sleep = sleep

    def _wait_for(self, path: Path, pid: int | None) -> dict[str, Any]:
        """``path`` once written; a failure if the owner died without writing it, or after :data:`WAIT_S`."""
        deadline = time.monotonic() + WAIT_S
        while not path.exists():
            if pid is not None and not pid_alive(pid):
                if path.exists():
                    break
                raise AssertionError(f"the worker that owned the grader runs (pid {pid}) ended without {path}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {path} after {WAIT_S:.0f} s")
            self._sleep(0.5)
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def get(self, name: str) -> GraderRun:
        plan = self._wait_for(self.shared / PLAN, None)
        name = GraderRuns.alias(name)
        if name in plan["build_errors"]:
            raise AssertionError(plan["build_errors"][name])
        if name not in plan["runs"]:
            if self._local is None:
                self._local = self._local_factory()
            return self._local.get(name)
        data = self._wait_for(self.shared / name / RUN, plan["pid"])
        if "error" in data:
            raise AssertionError(f"grader run {name}: {data['error']}")
        return GraderRun(**{**data, "impl": Path(data["impl"]), "results_path": Path(data["results_path"])})

    def durations(self) -> list[tuple[str, float]]:
        return self._local.durations() if self._local is not None else []

    def close(self) -> None:
        if self._local is not None:
            self._local.close()

