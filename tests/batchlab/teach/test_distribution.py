"""The student distribution works as its README says, on the skeleton and on a finished module.

A distribution (``batchlab release --out DIR``) is installed for real into a new virtual
environment (``pip install -e .``; its dependencies are this environment's, seen through a
``.pth`` file, so the test needs no network), and its README's commands are run in it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from batchlab.paths import STUDENT_MODULE, kit_root
from batchlab.teach.release import release

pytestmark = pytest.mark.slow


def readme_commands(readme: str) -> list[str]:
    """The commands of the README's English quick start, in order."""
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.strip().splitlines():
        commands += [part.strip() for part in line.split("&&")]
    return commands


class Distribution:
    def __init__(self, root: Path, python: Path) -> None:
        self.root, self.python = root, python
        self.bin = python.parent
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHLAB_", "PYTEST_"))}
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("VIRTUAL_ENV", None)

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = command.split()
        if argv[0] == "pip":
            # The install command as written, its dependencies taken from the outer environment (.pth).
            argv = [sys.executable, "-m", "pip", "--python", str(self.python), "install", "--no-deps",
                    "--quiet", *argv[2:]]
        elif argv[0] == "pytest":
            argv = [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *argv[1:]]
        else:
            argv[0] = str(self.bin / argv[0])
        return subprocess.run(argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    base = tmp_path_factory.mktemp("student")
    out = release(root=kit_root(), out=base / "lesson15").out_dir
    assert out is not None
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "outer-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return Distribution(out, python)


def test_the_readme_s_commands_work_on_the_skeleton_and_on_a_finished_module(dist: Distribution,
                                                                               repo_root: Path) -> None:
    commands = readme_commands((dist.root / "README.md").read_text(encoding="utf-8"))
    assert commands == ["pip install -e .", "batchlab demo", "pytest"]
    install = dist.run(commands[0])
    assert install.returncode == 0, install.stderr[-2000:]
    located = subprocess.run([str(dist.python), "-c", "import batchlab; print(batchlab.__file__)"],
                             cwd="/", env=dist.env, capture_output=True, text=True)
    assert Path(located.stdout.strip()).is_relative_to(dist.root), located.stdout + located.stderr

    demo = dist.run(commands[1])
    assert demo.returncode == 1, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "your module is not finished yet" in demo.stdout
    assert re.search(r"not implemented yet \(TODO step 0\d", demo.stdout)
    assert "never fired" not in demo.stdout and "FAIL" not in demo.stdout
    tests = dist.run(commands[2])
    assert tests.returncode == 0, tests.stdout[-3000:]

    skeleton = (dist.root / STUDENT_MODULE).read_bytes()
    finished = (repo_root / "labs/solution/lab03/src/services/document_processor.py").read_bytes()
    (dist.root / STUDENT_MODULE).write_bytes(finished)
    demo = dist.run(commands[1])
    assert demo.returncode == 0 and "all lesson thresholds met" in demo.stdout, demo.stdout[-2000:]
    tests = dist.run(commands[2])
    assert tests.returncode == 0, tests.stdout[-3000:]
    grade = dist.run("pytest grader -q")
    assert grade.returncode == 0, grade.stdout[-3000:]
    assert (dist.root / STUDENT_MODULE).read_bytes() == finished != skeleton
