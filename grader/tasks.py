"""Tasks: the slow work behind the tests (probe children, two-pass runs), started up front in parallel.

A test names the task whose facts it judges with ``@pytest.mark.task("name")``.
When collection ends, the conftest submits every task the selected tests need
to a small thread pool (each task mostly waits on child processes), longest
first, so the whole grader runs in about the time of its slowest scenarios;
a test then waits only for its own task. A task returns plain facts; the test
turns them into a verdict with points and a message.

A task is a function ``(ctx: Context) -> Any`` registered with :func:`task`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchlab.thresholds import Threshold

from .sandbox import Verdict, run_probe


@dataclass
class Context:
    """What every task needs: the implementation under test and where to work."""

    impl: Path
    results_dir: Path
    thresholds: dict[str, Threshold]
    timeout_scale: float = 1.0
    seed: int = 15

    @property
    def work_root(self) -> Path:
        return self.area("work")

    def area(self, name: str) -> Path:
        """A folder of the grader's beside the results (``runs``, ``work``, ``metrics``), marked as the grader's.

        A folder of that name that the grader did not make (no marker) is never adopted: the grader uses
        ``<name>-grader`` instead, so a later run can never remove someone else's files.
        """
        path = self.results_dir / name
        if path.exists() and not (path / MARKER).is_file():
            path = self.results_dir / f"{name}-grader"
        return owned_dir(path)

    def workdir(self, name: str) -> Path:
        path = self.work_root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def timeout(self, seconds: float) -> float:
        return seconds * self.timeout_scale

    def probe(self, check: str, args: dict[str, Any], *, workdir: str, timeout_s: float = 30.0,
              env: dict[str, str] | None = None) -> Verdict:
        """Run one probe check on the implementation (in a sandboxed child)."""
        return run_probe(self.impl, check, args, workdir=self.workdir(workdir), timeout_s=self.timeout(timeout_s),
                         env=env)


#: The file that marks a folder as the grader's own: only such folders are ever removed by a later run.
MARKER = ".batchlab-grader"


def owned_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        marker.write_text("written by the batchlab grader; removed by its next run\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class TaskDef:
    name: str
    fn: Callable[[Context], Any]
    cost: float  # rough seconds, to start the longest tasks first


TASKS: dict[str, TaskDef] = {}


def task(name: str, *, cost: float = 1.0) -> Callable[[Callable[[Context], Any]], Callable[[Context], Any]]:
    """Register ``fn`` as the task ``name``."""

    def register(fn: Callable[[Context], Any]) -> Callable[[Context], Any]:
        TASKS[name] = TaskDef(name, fn, cost)
        return fn

    return register


def register(name: str, fn: Callable[[Context], Any], *, cost: float = 1.0) -> None:
    TASKS[name] = TaskDef(name, fn, cost)


@dataclass
class Scheduler:
    """Runs tasks in a thread pool, each at most once; ``result(name)`` waits for one."""

    ctx: Context
    jobs: int = 3
    _futures: dict[str, Future[Any]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, names: Iterable[str]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="grader-task")
            wanted = sorted({n for n in names if n not in self._futures}, key=lambda n: -TASKS[n].cost)
            for name in wanted:
                self._futures[name] = self._pool.submit(TASKS[name].fn, self.ctx)

    def result(self, name: str) -> Any:
        if name not in TASKS:
            raise KeyError(f"unknown grader task {name!r}")
        self.submit([name])
        return self._futures[name].result()

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                for fut in self._futures.values():
                    fut.cancel()
                self._pool.shutdown(wait=True)
                self._pool = None
