"""The run directory's files are named in one place, :class:`batchlab.rundir.RunDir` (issue 15, item 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from batchlab.contract import BatchConfig
from batchlab.rundir import INPUT, LEDGER, SINK, SPEC, STATE, RunDir
from batchlab.runner import RunSpec, prepare

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "labs" / "batchlab").rglob("*.py"), *(ROOT / "grader").rglob("*.py")])
#: The files every run has (a generated input.json is the demo's, and the grader keeps its own beside the run).
RUN_FILE_NAMES = {SPEC, LEDGER, SINK}


def spelled_run_file_names(source: str) -> list[str]:
    """String literals of ``source`` that are exactly a run file's name (docstrings and globs are longer)."""
    return sorted({node.value for node in ast.walk(ast.parse(source))
                   if isinstance(node, ast.Constant) and node.value in RUN_FILE_NAMES})


class TestRunDir:
    def test_each_file_is_named_inside_the_run_directory(self, tmp_path: Path) -> None:
        """Every path a RunDir gives is the run directory joined with the file's one name."""
        run = RunDir(tmp_path)
        assert (run.spec, run.ledger, run.sink, run.state, run.input, run.stdout(2), run.stderr(2)) == (
            tmp_path / SPEC, tmp_path / LEDGER, tmp_path / SINK, tmp_path / STATE, tmp_path / INPUT,
            tmp_path / "pass2.stdout", tmp_path / "pass2.stderr")

    def test_the_runner_writes_where_the_run_dir_says(self, tmp_path: Path) -> None:
        """prepare() writes the spec and creates the state directory at the RunDir's paths."""
        run = RunDir(tmp_path / "run")
        prepare(RunSpec(impl=tmp_path / "impl.py", input=tmp_path / "in.json", run_dir=run.path,
                        config=BatchConfig()))
        assert (run.spec.is_file(), run.state.is_dir()) == (True, True)

    def test_a_string_path_is_accepted(self, tmp_path: Path) -> None:
        """RunDir(str) and RunDir(Path) name the same files."""
        assert RunDir(str(tmp_path)).ledger == RunDir(tmp_path).ledger


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_module_but_rundir_spells_a_run_file_name(path: Path) -> None:
    """Outside batchlab/rundir.py, code asks a RunDir for a run file's path instead of spelling its name."""
    if path.name == "rundir.py":
        pytest.skip("the one place that names them")
    assert spelled_run_file_names(path.read_text(encoding="utf-8")) == []


def test_the_name_check_can_fail() -> None:
    """A planted literal file name is found."""
    assert spelled_run_file_names('ledger = run / "ledger.jsonl"\n') == ["ledger.jsonl"]
