"""The student's workspace is sacred: the kit's riskiest commands and tests leave a checkout as they found it.

A copy of this checkout (every tracked and unignored file, committed in a git repository of
its own) gets a student's finished module, then runs the commands and tests that write
files: release (check, distribution, and the refused overwrite), the release, checks,
report and notebook-structure tests, a step of the grader, the demo, the report, a step check and a
notebook under nbval. Afterwards ``git status`` shows the student's edit and nothing else
(output goes only to ignored folders such as ``runs/``, ``reports/``, ``grader-results/``),
and the student's module is byte for byte what they wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.paths import SOLUTION_MODULE, STUDENT_MODULE, kit_root

pytestmark = pytest.mark.slow

#: The tests (of the copy) that write files or read the student module.
#: (tests/test_materials.py runs the teaching files' commands, but in a temporary workspace of its own.)
RISKY_TESTS = ["tests/batchlab/teach/test_release.py", "tests/batchlab/teach/test_selfcheck.py",
               "tests/batchlab/teach/test_report.py::TestReportFolder", "tests/notebooks/test_notebooks.py::TestStructure"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = kit_root()
    if not (source / ".git").exists():
        pytest.skip("the kit is not a git checkout here: nothing to compare a workspace with")
    root = tmp_path_factory.mktemp("checkout") / "kit"
    for rel in git(source, "ls-files", "-co", "--exclude-standard", "-z").split("\0"):
        if rel and (source / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / rel, root / rel)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=kit", "-c", "user.email=kit@example.org", "commit", "-q", "-m", "checkout")
    return root


def run(root: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLAB_", "PYTEST_"))}
    env.update(BATCHLAB_ROOT=str(root), PYTHONPATH=str(root / "labs"), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_finished_student_module_survives_the_kit_s_commands_and_tests(workspace: Path,
                                                                          tmp_path: Path) -> None:
    student = workspace / STUDENT_MODULE
    work = (workspace / SOLUTION_MODULE).read_bytes() + b"\n# my own notes: all six steps done\n"
    student.write_bytes(work)
    before = git(workspace, "status", "--porcelain")
    assert before.strip() == f"M {STUDENT_MODULE.as_posix()}"

    steps: list[tuple[tuple[str, ...], int]] = [
        (("-m", "batchlab", "release", "--check"), 0),
        (("-m", "batchlab", "release", "--out", str(tmp_path / "dist")), 0),
        (("-m", "batchlab", "release"), 2),  # refused: it would overwrite the student's work
        (("-m", "pytest", "-q", "-p", "no:cacheprovider", *RISKY_TESTS), 0),
        (("-m", "pytest", "grader", "--step", "idempotency", "-q", "-p", "no:cacheprovider"), 0),
        (("-m", "batchlab", "demo", "--docs", "30", "--run-dir", "runs/mine"), 0),
        (("-m", "batchlab", "report", "runs/mine", "--out", "reports/mine"), 0),
        (("-m", "batchlab", "check", "checkpoint"), 0),
        (("-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
          "notebooks/02_idempotency.ipynb"), 0),
    ]
    for argv, expected in steps:
        done = run(workspace, *argv)
        assert done.returncode == expected, (argv, done.stdout[-3000:], done.stderr[-3000:])
        assert student.read_bytes() == work, f"{' '.join(argv)} changed the student's module"
        assert git(workspace, "status", "--porcelain") == before, f"{' '.join(argv)} left files in the checkout"
    assert (workspace / "runs" / "mine" / "ledger.jsonl").exists() and (workspace / "reports" / "mine").is_dir()
    assert (tmp_path / "dist" / STUDENT_MODULE).read_bytes() != work
