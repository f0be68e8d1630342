"""Helpers for the grader's own tests: real grader runs on the reference, the skeleton and broken variants.

Every grader run is a real ``python -m pytest grader`` child process writing a
real ``results.json``. The runs are slow-ish (10-30 s each), so the first test
that needs one starts all of them, two at a time (the CI machine has 2 cores
shared with other tests), longest first; each test then waits for its own.

The broken variants are built at test time from the reference solution with the
textual replacements of ``tests/mutants/<name>.py`` (each ``old`` must occur
exactly once, so a changed solution fails loudly here).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from batchlab.paths import kit_root, solution_module

ROOT = kit_root()
if str(ROOT) not in sys.path:  # the grader package (grader/) is imported by some tests
    sys.path.insert(0, str(ROOT))

GRADER_DIR = ROOT / "grader"
MUTANTS_DIR = ROOT / "tests" / "mutants"
MUTANTS = sorted(p.stem for p in MUTANTS_DIR.glob("*.py"))
#: pytest options of every grader child: nbval is not needed by the grader and costs ~3 s per start.
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:nbval"]


def load_mutant(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mutant_{name}", MUTANTS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_mutant(module: ModuleType, solution: str) -> str:
    """The broken source: the solution with each replacement applied (each ``old`` found exactly once)."""
    if hasattr(module, "SOURCE"):
        return str(module.SOURCE)
    source = solution
    for old, new in module.REPLACEMENTS:
        count = source.count(old)
        if count != 1:
            raise AssertionError(f"{module.__name__}: expected the text to replace exactly once in the solution, "
                                 f"found it {count} times (did the solution change?):\n{old}")
        source = source.replace(old, new)
    return source


@dataclass
class GraderRun:
    """One finished ``pytest grader`` child: its exit, output and parsed results.json."""

    name: str
    impl: Path
    results_path: Path
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def results(self) -> dict[str, Any]:
        return json.loads(self.results_path.read_text(encoding="utf-8"))

    def tests(self) -> dict[str, dict[str, Any]]:
        """Results tests by grader test id (``test_name`` or ``test_scenario[name]``)."""
        data = self.results
        ids = data["extra_data"]["nodeids"]
        return {ids[t["number"]].split("::")[-1]: t for t in data["tests"]}

    def lost(self) -> dict[str, float]:
        return {tid: t["max_score"] - t["score"] for tid, t in self.tests().items() if t["score"] < t["max_score"]}


def run_grader(impl: Path, results: Path, *args: str, cwd: Path | None = None,
               grader: Path = GRADER_DIR) -> GraderRun:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", str(grader), "--impl", str(impl), "--results",
                           str(results), *PYTEST_ARGS, *args],
                          capture_output=True, text=True, cwd=cwd or results.parent, timeout=600)
    return GraderRun(name=results.parent.name, impl=impl, results_path=results, returncode=proc.returncode,
                     stdout=proc.stdout, stderr=proc.stderr, duration_s=time.monotonic() - started)


class GraderRuns:
    """All grader runs of this test session, started together on first use, two at a time."""

    #: Rough order of duration, longest first, so the pool ends early.
    ORDER = ["reference", "non_atomic_checkpoint", "lying_report", "done_before_sink", "no_idempotency_check",
             "retry_without_backoff", "unlimited_retries", "concurrent_chunks", "hangs", "no_checkpoint",
             "unbounded_concurrency", "skeleton", "import_error"]

    def _skeleton(self) -> Path:
        """The skeleton the solution renders to (never the student's working file, which may hold their work)."""
        from batchlab.release import render_student

        path = self.base / "skeleton-source" / "document_processor.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_student(solution_module()), encoding="utf-8")
        return path

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="grader-run")
        self.futures: dict[str, Future[GraderRun]] = {}
        solution = solution_module().read_text(encoding="utf-8")
        jobs: dict[str, tuple[Path, list[str]]] = {
            "reference": (solution_module(), ["--hidden"]),
            "skeleton": (self._skeleton(), []),
        }
        self.build_errors: dict[str, BaseException] = {}
        for name in MUTANTS:
            module = load_mutant(name)
            try:
                source = build_mutant(module, solution)
            except AssertionError as exc:
                self.build_errors[name] = exc
                continue
            path = base / name / "document_processor.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source, encoding="utf-8")
            jobs[name] = (path, list(getattr(module, "GRADER_ARGS", [])))
        order = [n for n in self.ORDER if n in jobs] + sorted(n for n in jobs if n not in self.ORDER)
        for name in order:
            impl, args = jobs[name]
            results = base / name / "grader-results" / "results.json"
            results.parent.mkdir(parents=True, exist_ok=True)
            self.futures[name] = self.pool.submit(run_grader, impl, results, *args, cwd=base / name)

    def get(self, name: str) -> GraderRun:
        if name in self.build_errors:
            raise self.build_errors[name]
        return self.futures[name].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
