"""One source, two versions: the student skeleton generated from the solution."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batchlab.paths import SOLUTION_MODULE, STUDENT_MODULE
from batchlab.release import ReleaseError, release, render_student, strip_solutions

SOURCE = """def f(x):
    \"\"\"Doc.\"\"\"
    # BEGIN SOLUTION step 02: double it
    y = x * 2
    return y
    # END SOLUTION


def g():
    return 1
"""


class TestStripSolutions:
    def test_a_region_becomes_a_todo_and_a_raise_at_its_indentation(self) -> None:
        out = "".join(strip_solutions(SOURCE.splitlines(keepends=True)))
        assert "    # TODO step 02: double it\n    raise NotImplementedError('TODO step 02: double it')\n" in out
        assert "x * 2" not in out and "def g():\n    return 1" in out

    def test_the_result_compiles(self) -> None:
        compile("".join(strip_solutions(SOURCE.splitlines(keepends=True))), "<student>", "exec")

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            ("# BEGIN SOLUTION a\n# BEGIN SOLUTION b\n# END SOLUTION\n", "nested_region"),
            ("# BEGIN SOLUTION a\nx = 1\n", "unclosed_region"),
            ("x = 1\n# END SOLUTION\n", "stray_end"),
            ("x = 1\n", "no_regions"),
        ],
    )
    def test_bad_markers_are_refused_with_the_line(self, text: str, code: str) -> None:
        with pytest.raises(ReleaseError) as info:
            strip_solutions(text.splitlines(keepends=True), source="sol.py")
        assert info.value.code == code and "sol.py:" in info.value.message


class TestRelease:
    def test_the_committed_skeleton_is_what_release_writes(self, repo_root: Path) -> None:
        release(root=repo_root, check=True)

    def test_check_fails_when_the_skeleton_is_stale(self, repo_root: Path, tmp_path: Path) -> None:
        for rel in (SOLUTION_MODULE, STUDENT_MODULE):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo_root / rel, tmp_path / rel)
        with (tmp_path / STUDENT_MODULE).open("a", encoding="utf-8") as fh:
            fh.write("# edited by hand\n")
        with pytest.raises(ReleaseError) as info:
            release(root=tmp_path, check=True)
        assert info.value.code == "skeleton_stale"
        release(root=tmp_path)
        release(root=tmp_path, check=True)

    def test_every_solution_region_names_its_lesson_step(self, repo_root: Path) -> None:
        student = render_student(repo_root / SOLUTION_MODULE)
        todos = [line.strip() for line in student.splitlines() if line.strip().startswith("# TODO")]
        assert len(todos) >= 8 and all(t.startswith("# TODO step 0") for t in todos)

    def test_the_skeleton_imports_and_its_entry_point_raises_not_implemented(self, repo_root: Path) -> None:
        code = (
            "import asyncio, sys\n"
            "from batchlab.worker import load_impl\n"
            f"m = load_impl({str(repo_root / STUDENT_MODULE)!r})\n"
            "try:\n"
            "    asyncio.run(m.process_documents_batch([], batch_id='b', service=None, sink=None, state_dir='.'))\n"
            "except NotImplementedError as e:\n"
            "    print('TODO OK', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("TODO OK TODO step 05")

    def test_a_distribution_has_no_solution_and_no_hidden_scenarios(self, repo_root: Path, tmp_path: Path) -> None:
        hidden = repo_root / "grader" / "hidden"
        out = tmp_path / "dist"
        release(root=repo_root, out=out)
        files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
        assert any(f.startswith("labs/student/") for f in files)
        assert any(f.startswith("labs/batchlab/") for f in files)
        assert not any("solution" in f.split("/") or "hidden" in f.split("/") for f in files)
        if hidden.exists():
            assert any(f.startswith("grader/") for f in files)

    def test_a_distribution_never_overwrites_a_folder(self, repo_root: Path, tmp_path: Path) -> None:
        (tmp_path / "dist").mkdir()
        (tmp_path / "dist" / "keep.txt").write_text("mine", encoding="utf-8")
        with pytest.raises(ReleaseError):
            release(root=repo_root, out=tmp_path / "dist")
        assert (tmp_path / "dist" / "keep.txt").read_text(encoding="utf-8") == "mine"
