"""One source, two versions: the student skeleton generated from the solution."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.paths import SOLUTION_MODULE, STUDENT_MODULE
from batchlab.teach.release import STUDENT_README, ReleaseError, release, render_student, strip_solutions

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


def kit_copy(repo_root: Path, tmp_path: Path, *, git: bool) -> Path:
    """The solution and the committed skeleton in a folder of their own (a git repository if ``git``)."""
    root = tmp_path / "kit"
    for rel in (SOLUTION_MODULE, STUDENT_MODULE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(render_student(repo_root / SOLUTION_MODULE) if rel == STUDENT_MODULE
                                else (repo_root / rel).read_text(encoding="utf-8"), encoding="utf-8")
    if git:
        for cmd in (["init", "-q"], ["add", "-A"],
                    ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "kit"]):
            subprocess.run(["git", "-C", str(root), *cmd], check=True, capture_output=True)
    return root


def edit_solution(root: Path) -> None:
    path = root / SOLUTION_MODULE
    path.write_text(path.read_text(encoding="utf-8").replace('"""', '"""Changed. ', 1), encoding="utf-8")


STUDENT_WORK = "# a student's finished work\nVALUE = 42\n"


class TestRelease:
    def test_the_committed_skeleton_is_what_release_writes(self, repo_root: Path) -> None:
        """In sync: the solution renders to the committed skeleton (the student's working file may differ)."""
        release(root=repo_root, check=True)

    def test_check_fails_when_the_solution_changed_without_a_new_skeleton(self, repo_root: Path,
                                                                          tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        edit_solution(root)
        with pytest.raises(ReleaseError) as info:
            release(root=root, check=True)
        assert info.value.code == "skeleton_stale"
        assert release(root=root).changed
        release(root=root, check=True)

    def test_check_passes_when_a_student_filled_in_their_module(self, repo_root: Path, tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        (root / STUDENT_MODULE).write_text(STUDENT_WORK, encoding="utf-8")
        result = release(root=root, check=True)
        assert "student's edits" in result.note
        assert (root / STUDENT_MODULE).read_text(encoding="utf-8") == STUDENT_WORK

    def test_check_still_catches_a_stale_skeleton_behind_a_student_edit(self, repo_root: Path,
                                                                         tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        (root / STUDENT_MODULE).write_text(STUDENT_WORK, encoding="utf-8")
        edit_solution(root)
        with pytest.raises(ReleaseError) as info:
            release(root=root, check=True)
        assert info.value.code == "skeleton_stale"

    @pytest.mark.parametrize("git", [True, False], ids=["git", "no-git"])
    def test_release_refuses_to_overwrite_a_student_s_work(self, repo_root: Path, tmp_path: Path,
                                                           git: bool) -> None:
        root = kit_copy(repo_root, tmp_path, git=git)
        (root / STUDENT_MODULE).write_text(STUDENT_WORK, encoding="utf-8")
        edit_solution(root)
        with pytest.raises(ReleaseError) as info:
            release(root=root)
        assert info.value.code == "student_work_present" and info.value.hints
        assert (root / STUDENT_MODULE).read_text(encoding="utf-8") == STUDENT_WORK

    def test_force_overwrites_after_keeping_a_copy_of_the_work(self, repo_root: Path, tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        (root / STUDENT_MODULE).write_text(STUDENT_WORK, encoding="utf-8")
        result = release(root=root, force=True)
        assert result.changed and result.backup is not None
        assert result.backup.read_text(encoding="utf-8") == STUDENT_WORK
        assert result.backup.is_relative_to(root / "runs")
        assert (root / STUDENT_MODULE).read_text(encoding="utf-8") == render_student(root / SOLUTION_MODULE)

    def test_release_regenerates_an_untouched_skeleton_after_a_solution_change(self, repo_root: Path,
                                                                               tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        edit_solution(root)
        result = release(root=root)
        assert result.changed and result.backup is None
        assert (root / STUDENT_MODULE).read_text(encoding="utf-8").startswith('"""Changed. ')

    def test_every_solution_region_names_its_lesson_step(self, repo_root: Path) -> None:
        student = render_student(repo_root / SOLUTION_MODULE)
        todos = [line.strip() for line in student.splitlines() if line.strip().startswith("# TODO")]
        assert len(todos) >= 8 and all(t.startswith("# TODO step 0") for t in todos)

    def test_the_skeleton_imports_and_its_entry_point_raises_not_implemented(self, skeleton_impl: Path) -> None:
        code = (
            "import asyncio, sys\n"
            "from batchlab.worker import load_impl\n"
            f"m = load_impl({str(skeleton_impl)!r})\n"
            "try:\n"
            "    asyncio.run(m.process_documents_batch([], batch_id='b', service=None, sink=None, state_dir='.'))\n"
            "except NotImplementedError as e:\n"
            "    print('TODO OK', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("TODO OK TODO step 0")


class TestDistribution:
    def test_a_distribution_has_no_solution_and_no_hidden_scenarios(self, repo_root: Path, tmp_path: Path) -> None:
        out = tmp_path / "dist"
        release(root=repo_root, out=out)
        files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
        assert any(f.startswith("labs/batchlab/") for f in files) and any(f.startswith("grader/") for f in files)
        assert "binder/postBuild" in files and ".devcontainer/devcontainer.json" in files
        assert not any("solution" in f.split("/") or "hidden" in f.split("/") for f in files)

    def test_its_student_module_is_the_skeleton_and_its_readme_the_student_guide(self, repo_root: Path,
                                                                                 tmp_path: Path) -> None:
        out = release(root=repo_root, out=tmp_path / "dist").out_dir
        assert out is not None
        assert (out / STUDENT_MODULE).read_text(encoding="utf-8") == render_student(repo_root / SOLUTION_MODULE)
        assert (out / "README.md").read_text(encoding="utf-8") == (repo_root / STUDENT_README).read_text(
            encoding="utf-8")
        assert not (out / STUDENT_README).exists()

    def test_writing_a_distribution_leaves_the_kit_s_student_module_alone(self, repo_root: Path,
                                                                          tmp_path: Path) -> None:
        root = kit_copy(repo_root, tmp_path, git=True)
        (root / STUDENT_MODULE).write_text(STUDENT_WORK, encoding="utf-8")
        edit_solution(root)  # even a stale skeleton is not rewritten by --out
        out = release(root=root, out=tmp_path / "dist").out_dir
        assert out is not None
        assert (root / STUDENT_MODULE).read_text(encoding="utf-8") == STUDENT_WORK
        assert (out / STUDENT_MODULE).read_text(encoding="utf-8").startswith('"""Changed. ')

    def test_every_file_its_readme_names_exists(self, repo_root: Path, tmp_path: Path) -> None:
        out = release(root=repo_root, out=tmp_path / "dist").out_dir
        assert out is not None
        named = set(re.findall(r"`((?:labs|notebooks|templates|examples|grader|tests)/[^`\s]*|[\w-]+\.md)`",
                               (out / "README.md").read_text(encoding="utf-8")))
        assert len(named) >= 5
        missing = sorted(n for n in named if not (out / n.rstrip("/")).exists())
        assert missing == []

    def test_a_distribution_never_overwrites_a_folder(self, repo_root: Path, tmp_path: Path) -> None:
        (tmp_path / "dist").mkdir()
        (tmp_path / "dist" / "keep.txt").write_text("mine", encoding="utf-8")
        with pytest.raises(ReleaseError):
            release(root=repo_root, out=tmp_path / "dist")
        assert (tmp_path / "dist" / "keep.txt").read_text(encoding="utf-8") == "mine"
