"""Helpers for the grader's own tests: real grader runs on the reference, the skeleton and broken variants.

Every grader run is a real ``python -m pytest grader`` child process writing a
real ``results.json``. The runs are slow-ish (10-60 s each), so they are all
started as soon as collection ends (``conftest.py``), two at a time (the CI
machine has 2 cores shared with other tests), longest first, while the rest of
the suite runs; the tests that read them run last, each waiting for its own.

The broken variants are built at test time from the reference solution with the
textual replacements of ``tests/mutants/<name>.py`` (each ``old`` must occur
exactly once, so a changed solution fails loudly here); the correct variants in
other styles likewise from ``tests/variants/<name>.py``. The reference *up to
step N* (:func:`solution_up_to`) keeps the code of steps 01..N and turns every
later region into the skeleton's TODO, as a student who has just finished step N
would have it.

Only the runs that the selected tests need are started up front (``wanted``);
any other is started when first asked for. A run that would grade the same code on
the same tests as another is not run twice (:meth:`GraderRuns.alias`).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import re
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
VARIANTS_DIR = ROOT / "tests" / "variants"
VARIANTS = sorted(p.stem for p in VARIANTS_DIR.glob("*.py"))
#: The lesson's steps by notebook number, and each step's grader test file.
STEP_NUMBERS = ["01", "02", "03", "04", "05", "06"]
STEP_FILES = {num: sorted(GRADER_DIR.glob(f"test_{num}_*.py")) for num in STEP_NUMBERS}  # step 03: backoff, breaker
#: pytest options of every grader child: nbval is not needed by the grader and costs ~3 s per start.
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-p", "no:nbval"]


def load_mutant(name: str, folder: Path = MUTANTS_DIR) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{folder.name}_{name}", folder / f"{name}.py")
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


def load_variant(name: str) -> ModuleType:
    return load_mutant(name, VARIANTS_DIR)


_STEP_OF_REGION = re.compile(r"^[ \t]*#\s*BEGIN SOLUTION\b\s*step (\d\d)\b")


def solution_up_to(step: str, solution: str) -> str:
    """The reference as a student has it after finishing ``step``: later steps' regions become TODOs.

    Regions of steps up to ``step`` lose their markers and keep their code; the others go
    through :func:`batchlab.teach.release.strip_solutions`, exactly as the skeleton is made.
    """
    from batchlab.teach.release import END, strip_solutions

    lines = solution.splitlines(keepends=True)
    kept: list[str] = []
    keeping = False
    for line in lines:
        begin = _STEP_OF_REGION.match(line)
        if begin and begin.group(1) <= step:
            keeping = True
            continue
        if keeping and END.match(line):
            keeping = False
            continue
        kept.append(line)
    if not any(_STEP_OF_REGION.match(line) for line in kept):
        return "".join(kept)
    return "".join(strip_solutions(kept, source=f"<solution up to step {step}>"))


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
               grader: Path | list[Path] = GRADER_DIR) -> GraderRun:
    """``python -m pytest GRADER --impl IMPL --results RESULTS ARGS``; ``grader`` may be a list of test files."""
    started = time.monotonic()
    paths = [str(p) for p in grader] if isinstance(grader, list) else [str(grader)]
    cmd = [sys.executable, "-m", "pytest", *paths, "--impl", str(impl), "--results", str(results), *PYTEST_ARGS, *args]
    proc = run_child(cmd, cwd=cwd or results.parent, timeout=600)
    return GraderRun(name=results.parent.name, impl=impl, results_path=results, returncode=proc.returncode,
                     stdout=proc.stdout, stderr=proc.stderr, duration_s=time.monotonic() - started)


#: ``execve`` errors that say nothing about the child: the kernel could not start it this time (seen once in CI:
#: ``EFAULT`` from a ``vfork`` in a pool thread while the test process was busy with notebooks' kernels).
TRANSIENT_SPAWN_ERRORS = frozenset({errno.EFAULT, errno.EAGAIN, errno.ENOMEM, errno.ETXTBSY})


def run_child(cmd: list[str], *, cwd: Path, timeout: float, attempts: int = 3,
              sleep: Any = time.sleep) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` that retries a spawn the kernel refused for a transient reason; a child that ran is never rerun.

    Only an ``OSError`` raised by ``Popen`` itself (nothing executed) is retried, after 0.5 s, 1 s; anything the
    child did (its exit code, its output, a timeout) is returned or raised as it is.
    """
    for attempt in range(1, attempts + 1):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
        except OSError as exc:
            if exc.errno not in TRANSIENT_SPAWN_ERRORS or attempt == attempts:
                raise
            sleep(0.5 * attempt)
    raise AssertionError("unreachable")


class GraderRuns:
    """The grader runs of this test session, two at a time: the wanted ones started together, others on demand.

    Names: ``reference`` (with ``--hidden``), ``skeleton``, each mutant, ``variant-<name>`` for each correct
    variant, and ``upto-NN`` (the reference up to step NN, graded on the step files up to NN+1).
    """

    def cost(self, name: str, args: list[str]) -> float:
        """A run's rough duration (idle 2-core seconds), to start the longest first so the pool ends early.

        Hidden scenarios double a run (21 scenarios instead of 13); ``--step`` runs are probes only;
        ``upto-NN`` runs grade step files only, more of them the later the step; a module that does
        not import is graded in a second.
        """
        if name == "import_error":
            return 2.0
        if name.startswith("upto-"):
            return 8.0 + int(name[-2:])
        if "--step" in args:
            return 8.0
        return 60.0 if "--hidden" in args else 30.0

    def _skeleton(self) -> Path:
        """The skeleton the solution renders to (never the student's working file, which may hold their work)."""
        from batchlab.teach.release import render_student

        path = self.base / "skeleton-source" / "document_processor.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_student(solution_module()), encoding="utf-8")
        return path

    def __init__(self, base: Path, wanted: set[str] | None = None) -> None:
        self.base = base
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="grader-run")
        self.futures: dict[str, Future[GraderRun]] = {}
        self.build_errors: dict[str, BaseException] = {}
        self.jobs: dict[str, Any] = {"reference": lambda: (solution_module(), ["--hidden"], GRADER_DIR),
                                     "skeleton": lambda: (self._skeleton(), [], GRADER_DIR)}
        for name in MUTANTS:
            self.jobs[name] = lambda name=name: self._built(name, load_mutant(name))
        for name in VARIANTS:
            self.jobs[f"variant-{name}"] = lambda name=name: self._built(f"variant-{name}", load_variant(name))
        for index, num in enumerate(STEP_NUMBERS):
            files = [f for n in STEP_NUMBERS[:index + 2] for f in STEP_FILES[n]]  # up to step NN, and the next one
            self.jobs[f"upto-{num}"] = lambda num=num, files=files: (
                self._write(f"upto-{num}", solution_up_to(num, solution_module().read_text(encoding="utf-8"))),
                [], files)
        names = {self.alias(n) for n in (set(self.jobs) if wanted is None else wanted & set(self.jobs))}
        built = {name: self._build(name) for name in sorted(names)}
        for name in sorted(built, key=lambda n: -self.cost(n, built[n][1]) if built[n] else 0.0):
            self._submit(name, built[name])

    def _write(self, name: str, source: str) -> Path:
        path = self.base / name / "document_processor.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
        return path

    def _built(self, name: str, module: ModuleType) -> tuple[Path, list[str], Path]:
        source = build_mutant(module, solution_module().read_text(encoding="utf-8"))
        return self._write(name, source), list(getattr(module, "GRADER_ARGS", [])), GRADER_DIR

    def _build(self, name: str) -> tuple[Path, list[str], Any] | None:
        """The run's (impl, args, grader) with its source written; None (and the error kept) when it cannot be built."""
        try:
            built: tuple[Path, list[str], Any] = self.jobs[name]()
        except AssertionError as exc:
            self.build_errors[name] = exc
            return None
        return built

    def _submit(self, name: str, built: tuple[Path, list[str], Any] | None = None) -> None:
        if name in self.futures or name in self.build_errors:
            return
        built = built or self._build(name)
        if built is None:
            return
        impl, args, grader = built
        results = self.base / name / "grader-results" / "results.json"
        results.parent.mkdir(parents=True, exist_ok=True)
        self.futures[name] = self.pool.submit(run_grader, impl, results, *args, cwd=self.base / name, grader=grader)

    @staticmethod
    def alias(name: str) -> str:
        """The run that answers for ``name``: the reference up to a step after which no TODO is left (05: step 06
        has no region of its own; 06) is the reference's code, markers aside (``test_grader_steps_in_order`` proves
        it), and the reference's run grades every step file too, so those steps are read from the reference's run."""
        if name.startswith("upto-") and "TODO step" not in solution_up_to(
                name.removeprefix("upto-"), solution_module().read_text(encoding="utf-8")):
            return "reference"
        return name

    def get(self, name: str) -> GraderRun:
        name = self.alias(name)
        self._submit(name)
        if name in self.build_errors:
            raise self.build_errors[name]
        return self.futures[name].result()

    def durations(self) -> list[tuple[str, float]]:
        """The finished runs' wall times (``GraderRun.duration_s``), longest first."""
        done = [(name, fut.result().duration_s) for name, fut in self.futures.items()
                if fut.done() and not fut.cancelled() and fut.exception() is None]
        return sorted(done, key=lambda item: -item[1])

    def close(self) -> None:
        """Wait for the runs under way; those not started yet are dropped (a session stopped early, ``-x``)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
