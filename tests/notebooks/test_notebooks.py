"""The step notebooks: the shape students rely on, and real runs of every notebook in a Jupyter kernel.

The structural tests read the ``.ipynb`` files as JSON (fast). The execution tests
run ``python -m pytest --nbval-lax notebooks/`` in a child process, exactly as a
teacher would, twice:

* with the reference selected (``BATCHLAB_IMPL``) and ``BATCHLAB_STRICT=1``: every
  cell must run, every demo must show real results (strict mode lets any error of
  a guarded cell through), and every ``# NBVAL_CHECK_OUTPUT`` cell must print
  exactly what the notebook stores;
* with the generated skeleton and no strict mode: a student who has written
  nothing yet can still "Run All" without a single failing cell.

In strict mode ``check()`` raises unless every public check passes, so the first
run also proves that each notebook's check cell turns green with the reference.
The two runs start together, one per core.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from batchlab.paths import kit_root, solution_module
from batchlab.teach.selfcheck import STEPS

NOTEBOOKS = kit_root() / "notebooks"
STEP_NOTEBOOKS = sorted(NOTEBOOKS.glob("0[0-6]_*.ipynb"))
GRADED_NAMES = {"CheckpointStore", "make_idempotency_key", "backoff_delay", "make_retrying", "CircuitBreaker", "process_document",
                "process_documents_batch"}
CJK = re.compile(r"[\u4e00-\u9fff]")


def cells_of(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell: dict[str, Any]) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def code_cells(path: Path) -> list[str]:
    return [source(c) for c in cells_of(path) if c["cell_type"] == "code"]


def python_of(cell_source: str) -> ast.Module:
    """A cell as Python (IPython magics dropped, top-level await allowed)."""
    text = "\n".join(line for line in cell_source.splitlines() if not line.lstrip().startswith(("%", "!")))
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return compile(text, "<cell>", "exec", flags=flags, dont_inherit=True)  # type: ignore[return-value]


def notebook_ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


class TestStructure:
    def test_there_is_one_notebook_per_step_from_00_to_06(self) -> None:
        assert [p.name[:2] for p in STEP_NOTEBOOKS] == ["00", *STEPS]

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS[1:], ids=notebook_ids(STEP_NOTEBOOKS[1:]))
    def test_each_step_notebook_ends_with_the_check_of_its_step(self, path: Path) -> None:
        last = code_cells(path)[-1]
        assert f'check("{STEPS[path.name[:2]]}")' in last, last

    def test_notebook_00_ends_with_the_todo_overview_of_the_student_module(self) -> None:
        assert "overview()" in code_cells(STEP_NOTEBOOKS[0])[-1]

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=notebook_ids(STEP_NOTEBOOKS))
    def test_only_checked_cells_store_outputs_and_each_of_them_does(self, path: Path) -> None:
        for cell in cells_of(path):
            if cell["cell_type"] != "code":
                continue
            checked = "# NBVAL_CHECK_OUTPUT" in source(cell)
            assert bool(cell["outputs"]) == checked, source(cell)[:200]

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=notebook_ids(STEP_NOTEBOOKS))
    def test_the_teaching_text_is_chinese(self, path: Path) -> None:
        prose = [source(c) for c in cells_of(path) if c["cell_type"] == "markdown"]
        assert prose and all(CJK.search(text) for text in prose)

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=notebook_ids(STEP_NOTEBOOKS))
    def test_no_cell_defines_graded_code_which_lives_in_the_student_module(self, path: Path) -> None:
        for text in code_cells(path):
            defined = {node.name for node in ast.walk(python_of(text))
                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            assert not defined & GRADED_NAMES, text[:200]

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=notebook_ids(STEP_NOTEBOOKS))
    def test_every_cell_that_calls_the_student_module_is_guarded(self, path: Path) -> None:
        for text in code_cells(path):
            if "load_student()" in text:
                assert "with student_cell(" in text, text[:200]

    @pytest.mark.parametrize("path", STEP_NOTEBOOKS, ids=notebook_ids(STEP_NOTEBOOKS))
    def test_run_directories_go_to_a_temporary_folder(self, path: Path) -> None:
        setup = code_cells(path)[0]
        # work_dir(): a fresh temporary folder removed when the kernel ends (issue 8 item 7), never mkdtemp alone.
        assert re.search(r"^WORK = work_dir\(", setup, re.M) and "mkdtemp(" not in setup, setup
        assert not any("kit_root()" in text or "new_run_dir(" in text for text in code_cells(path))


def start_nbval(paths: list[Path], env: dict[str, str]) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout", "300",
           "-p", "no:cacheprovider", "-q", "--color=no", *map(str, paths)]
    return subprocess.Popen(cmd, cwd=kit_root(), env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


@dataclass
class NbvalRun:
    """One ``pytest --nbval-lax`` child process over some notebooks."""

    proc: subprocess.Popen[str]
    started: float

    def finish(self) -> tuple[int, str, float]:
        out, _ = self.proc.communicate(timeout=900)
        return self.proc.returncode, out, time.monotonic() - self.started


@pytest.fixture(scope="module")
def nbval_runs(skeleton_impl: Path) -> Iterator[dict[str, NbvalRun]]:
    """Both nbval runs, started together (one per core) so that the pair costs the time of the longer one.

    The skeleton run uses the skeleton the solution renders to, not the student's working file."""
    runs: dict[str, NbvalRun] = {}
    before = files_under(NOTEBOOKS)
    if solution_module().exists():
        runs["reference"] = NbvalRun(start_nbval([NOTEBOOKS], {"BATCHLAB_IMPL": str(solution_module()),
                                                               "BATCHLAB_STRICT": "1"}), time.monotonic())
    runs["skeleton"] = NbvalRun(start_nbval(STEP_NOTEBOOKS, {"BATCHLAB_IMPL": str(skeleton_impl),
                                                            "BATCHLAB_STRICT": "0"}), time.monotonic())
    runs["before"] = before  # type: ignore[assignment]
    yield runs
    for run in runs.values():
        if isinstance(run, NbvalRun) and run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


@pytest.mark.slow
class TestExecution:
    @pytest.mark.skipif(not solution_module().exists(), reason="the reference is not part of a student distribution")
    def test_every_notebook_runs_with_the_reference_and_every_check_cell_is_green(
        self, nbval_runs: dict[str, NbvalRun]
    ) -> None:
        code, out, seconds = nbval_runs["reference"].finish()
        print(f"nbval over {NOTEBOOKS} with the reference: {seconds:.1f} s")
        assert code == 0, out[-8000:]
        assert files_under(NOTEBOOKS) == nbval_runs["before"], "a notebook wrote files into the kit"

    def test_a_student_with_an_untouched_skeleton_can_run_all_cells(self, nbval_runs: dict[str, NbvalRun]) -> None:
        code, out, seconds = nbval_runs["skeleton"].finish()
        print(f"nbval over the step notebooks with the skeleton: done within {seconds:.1f} s")
        assert code == 0, out[-8000:]
