"""``batchlab autograder``: the zip's layout, and real Gradescope runs in a simulated ``/autograder``.

The simulation: bubblewrap gives each run a root made of this machine's own top-level folders plus a temporary
folder bound at ``/autograder`` (nothing is created at the real ``/autograder``). ``setup.sh`` runs there with
``BATCHLAB_PYTHON`` (this interpreter's base Python, so no apt) and ``BATCHLAB_PIP_ARGS="--no-deps --no-index"``
(the kit from the zip's wheel, offline); the kit's dependencies come from this test's own environment through a
``.pth`` file in the new venv (what Gradescope gets from PyPI at build time). Skipped, saying why, where
bubblewrap is missing or cannot make namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from batchlab.grade.autograder import build_autograder

from .conftest import bwrap_unusable, reference_source, skeleton_source

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "grader"))  # the grader tests' helpers, by name
from grader_runs import build_mutant, load_mutant  # noqa: E402

GRADESCOPE_DEFAULT_TIMEOUT_S = 600


def test_the_zip_has_gradescopes_layout_and_no_solution(tmp_path: Path) -> None:
    """setup.sh and run_autograder sit executable at the root; the kit is a wheel; the grader and hidden scenarios
    are there, the reference solution is not."""
    zip_path = build_autograder(tmp_path / "autograder.zip")
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
        wheel = next(n for n in names if n.endswith(".whl"))
        with zipfile.ZipFile(zf.open(wheel)) as whl:
            inside = whl.namelist()
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert "kit/grader/conftest.py" in names and any(n.startswith("kit/grader/hidden/") for n in names)
    assert not any("solution" in n for n in names + inside)
    assert "batchlab/grade/gradescope.py" in inside and "batchlab/thresholds.toml" in inside


def in_autograder(root: Path, *cmd: str, env: dict[str, str] | None = None,
                  timeout: float = GRADESCOPE_DEFAULT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with ``root`` at ``/autograder`` and the rest of this machine's folders as they are, in a clean
    environment as on Gradescope (none of this test's variables, such as ``PYTHONPATH`` or ``BATCHLAB_ROOT``)."""
    args = ["bwrap", "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "--clearenv",
            "--setenv", "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--setenv", "HOME", os.environ.get("HOME", "/root"), "--setenv", "LANG", "C.UTF-8"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in ("proc", "dev", "autograder"):
            continue
        if entry.is_symlink():
            args += ["--symlink", os.readlink(entry), str(entry)]
        elif entry.is_dir():
            args += ["--bind", str(entry), str(entry)]
    args += ["--bind", str(root), "/autograder", "--chdir", "/autograder"]
    for key, value in (env or {}).items():
        args += ["--setenv", key, value]
    return subprocess.run([*args, *cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def autograder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built image: the zip unpacked in /autograder/source, setup.sh run, run_autograder copied up."""
    reason = bwrap_unusable()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("autograder")
    with zipfile.ZipFile(build_autograder(root.parent / f"{root.name}.zip")) as zf:
        zf.extractall(root / "source")
    for name in ("setup.sh", "run_autograder"):
        (root / "source" / name).chmod(0o755)  # what Gradescope's unzip keeps
    base_python = str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
    proc = in_autograder(root, "bash", "/autograder/source/setup.sh",
                         env={"BATCHLAB_PYTHON": base_python, "BATCHLAB_PIP_ARGS": "--no-deps --no-index"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    return root


def grade(root: Path, source: str, env: dict[str, str] | None = None) -> tuple[dict[str, Any], float, str]:
    """One submission through /autograder/run_autograder: its results.json, wall time and stdout."""
    for name in ("submission", "results", "work"):
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "submission").mkdir()
    (root / "submission" / "document_processor.py").write_text(source, encoding="utf-8")
    started = time.monotonic()
    proc = in_autograder(root, "/autograder/run_autograder", env=env)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text(encoding="utf-8")), took, proc.stdout


@pytest.mark.slow
def test_setup_installs_the_kit_from_the_zips_wheel(autograder: Path) -> None:
    """After setup.sh, /autograder/venv imports batchlab from its own site-packages (the wheel), not this checkout."""
    proc = in_autograder(autograder, "/autograder/venv/bin/python", "-c",
                         "import batchlab.grade.gradescope as g; print(g.__file__)", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("/autograder/venv/lib/"), proc.stdout


@pytest.mark.slow
def test_the_reference_gets_full_marks_with_the_hidden_scenarios(autograder: Path) -> None:
    """run_autograder on the reference writes results.json with every point, hidden scenarios included."""
    data, _, _ = grade(autograder, reference_source())
    assert data["extra_data"]["hidden_run"] is True
    assert data["score"] == data["max_score"] > 0
    assert any(t["number"].startswith("H.") for t in data["tests"])
    assert data["stdout_visibility"] == "after_published"


@pytest.mark.slow
def test_the_skeleton_gets_zero_with_todo_feedback(autograder: Path) -> None:
    """The skeleton scores 0 and its feedback names the TODOs to write."""
    data, _, _ = grade(autograder, skeleton_source())
    assert data["score"] == 0 and data["max_score"] > 0
    assert "TODO" in json.dumps(data["tests"], ensure_ascii=False)


@pytest.mark.slow
def test_a_hanging_submission_gets_a_results_file_within_gradescopes_time_limit(autograder: Path) -> None:
    """A batch that hangs forever: results.json arrives in time, the scenarios score 0, the steps before keep theirs."""
    hangs = load_mutant("hangs")  # the grader's own hanging variant, kept in step with the solution
    hanging = build_mutant(hangs, reference_source())
    # Its short timeouts too (hung children use no CPU), as the grader's own test of it does.
    data, took, _ = grade(autograder, hanging, env={"BATCHLAB_GRADER_ARGS": " ".join(hangs.GRADER_ARGS)})
    assert took < GRADESCOPE_DEFAULT_TIMEOUT_S
    scenarios = [t for t in data["tests"] if t["number"][0] in "AH"]
    assert scenarios and all(t["score"] == 0 for t in scenarios)
    assert all(t["score"] == t["max_score"] for t in data["tests"] if t.get("tags") == ["checkpoint"])
