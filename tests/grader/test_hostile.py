"""Hostile submissions (``tests/grader/hostile/*/document_processor.py``) cannot change the grade, the kit or the machine.

Each fixture is graded by a real ``pytest grader`` child (the import check and the ``clean_run`` scenario: a
probe child and the scenario's workers, all importing the fixture) in a throwaway copy of the kit (its
``grader/`` and ``labs/batchlab/``, a git repository of its own, first on ``PYTHONPATH``), with bubblewrap and
with the sandbox turned off (``--no-sandbox``, the fallback). Every run must end with a complete
``results.json`` that says which sandbox was in force, a kit whose ``git status`` is clean, no process of the
run left anywhere (found by a marker in their environment) and no point: none of the fixtures implements
anything, so any point would be forged. Where the fallback cannot keep a promise (reading hidden files,
killing the grader) the test says what the results state instead. The forgers (an exact forgery of the ledger
and the sink, a worker talking the harness's protocol itself, a processor answering its own calls and writing
their ledger lines) must also be named as such in the results; the last is also graded on the step tests whose
probes run batches (steps 04-06), where it must earn nothing either.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from batchlab.paths import kit_root

from grader.bubblewrap import detect

ROOT = kit_root()
HOSTILE = Path(__file__).with_name("hostile")
FIXTURES = sorted(p.name for p in HOSTILE.iterdir() if (p / "document_processor.py").is_file())
MARK = "BATCHLAB_HOSTILE_RUN"
HIDDEN_NAME = "hidden_late_call"  # a hidden scenario's name: never in the feedback of a run without --hidden
BWRAP = detect().active
SITE = Path(sysconfig.get_paths()["purelib"])

pytestmark = pytest.mark.slow


def _copy_kit(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "grader", dest / "grader", ignore=ignore)
    shutil.copytree(ROOT / "labs" / "batchlab", dest / "labs" / "batchlab", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    (dest / ".gitignore").write_text("__pycache__/\n*.pyc\n", encoding="utf-8")
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "kit"], check=True)
    return dest


def _marked() -> list[int]:
    """Processes whose environment carries this module's marker (every process a hostile run started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if f"{MARK}=".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _survivors(timeout_s: float = 15.0) -> list[int]:
    """Marked processes still there after ``timeout_s`` (each is killed afterwards, so nothing leaks from a test)."""
    deadline = time.monotonic() + timeout_s
    while (left := _marked()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


@dataclass
class HostileRun:
    returncode: int
    output: str
    results: dict[str, Any]
    results_text: str
    kit_status: str
    survivors: list[int]
    site_pth: bool


def _grade(name: str, tmp_path: Path, *, sandbox: bool, files: tuple[str, ...] = ("test_acceptance.py",),
           select: str | None = "clean_run") -> HostileRun:
    kit = _copy_kit(tmp_path / "kit")
    impl = tmp_path / "submissions" / name / "document_processor.py"
    impl.parent.mkdir(parents=True)
    shutil.copy2(HOSTILE / name / "document_processor.py", impl)
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, MARK: uuid.uuid4().hex, "PYTHONPATH": str(kit / "labs"), "TMPDIR": str(tmp_path / "tmp"),
           "BATCHLAB_ROOT": str(kit)}
    env.pop("BATCHLAB_SANDBOX", None)
    cmd = [sys.executable, "-m", "pytest", *(str(kit / "grader" / f) for f in files),
           *(["-k", select] if select else []), "--impl", str(impl), "--results", str(out / "results.json"), "-q", "-p", "no:cacheprovider",
           "-p", "no:nbval", *([] if sandbox else ["--no-sandbox"])]
    try:
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=300)
        returncode, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, output = -1, f"the grader did not end in 300 s: {exc}"
    survivors = _survivors()
    text = (out / "results.json").read_text(encoding="utf-8") if (out / "results.json").exists() else "{}"
    status = subprocess.run(["git", "-C", str(kit), "status", "--porcelain"], capture_output=True, text=True).stdout
    pth = SITE / "zz_hostile_tamper.pth"
    site_pth = pth.exists()
    pth.unlink(missing_ok=True)  # never leave the fixture's file in the real environment
    shutil.rmtree(tmp_path / "tmp", ignore_errors=True)  # what a flood wrote outside a sandbox
    return HostileRun(returncode, output, json.loads(text), text, status, survivors, site_pth)


def _assert_contained(run: HostileRun, *, sandbox: bool) -> None:
    """A complete results.json saying which sandbox, no point, a clean kit, no process left."""
    assert run.results.get("tests"), f"no complete results.json:\n{run.output[-3000:]}"
    extra = run.results["extra_data"]
    assert extra["sandbox"]["kind"] == ("bubblewrap" if sandbox else "none"), extra["sandbox"]
    assert not extra.get("unfinished"), run.output[-3000:]
    assert run.results["score"] == 0, run.results_text[:3000]
    assert "FORGED" not in run.results_text
    assert run.survivors == [], f"processes left behind: {run.survivors}"
    assert run.kit_status == "", f"the kit changed:\n{run.kit_status}"
    assert not run.site_pth, "a .pth file was dropped into site-packages"


#: Fixtures that forge a run's records exactly (``forge_exact``), talk the harness's protocol themselves
#: (``bypass_proxy``) or answer their own calls and write the call lines (``forge_probe``): the harness side
#: records what they did, and the scenario is not scored, saying why.
FORGERS = ("forge_exact", "bypass_proxy", "forge_probe")


def _assert_forgery_named(run: HostileRun, name: str) -> None:
    if name in FORGERS:
        assert "forged records" in run.results_text, run.results_text[:3000]


needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"bubblewrap does not run here: {detect().reason}")


@needs_bwrap
@pytest.mark.parametrize("name", FIXTURES)
def test_hostile_submission_is_contained_by_bubblewrap(name: str, tmp_path: Path) -> None:
    """In bubblewrap, every hostile fixture ends with full results, no point, an unchanged kit and no process left."""
    run = _grade(name, tmp_path, sandbox=True)
    _assert_contained(run, sandbox=True)
    _assert_forgery_named(run, name)
    if name == "forge_exact":  # the worker saw neither file: it fell back to commits without calls
        assert "the service never answered" in run.results_text and "did not write" not in run.results_text
    assert run.results["extra_data"]["kit_changed"] == []
    assert HIDDEN_NAME not in run.results_text, "the hidden scenarios leaked into the feedback"
    assert "sandbox: bubblewrap" in run.output


FALLBACK_LIMITS = {
    "kill_parent": "without a sandbox a child can SIGKILL the grader: only the 'unfinished' results.json remains",
    "read_hidden": "without a sandbox a child can read the hidden scenarios",
}


@pytest.mark.parametrize("name", [f for f in FIXTURES if f not in FALLBACK_LIMITS])
def test_hostile_submission_is_contained_by_the_fallback(name: str, tmp_path: Path) -> None:
    """Without bubblewrap, the limits, the orphan sweep and the kit snapshot still give full results, no point, a
    restored kit (the change reported) and no process left."""
    run = _grade(name, tmp_path, sandbox=False)
    if name == "tamper_kit":  # it did change the kit: put back, and said so; its own new file is reported
        changed = run.results["extra_data"]["kit_changed"]
        assert any("thresholds.toml" in c for c in changed) and any("TAMPERED.txt" in c for c in changed), changed
        assert "THE KIT CHANGED DURING GRADING" in run.output
        (tmp_path / "kit" / "TAMPERED.txt").unlink()
        run.kit_status = subprocess.run(["git", "-C", str(tmp_path / "kit"), "status", "--porcelain"],
                                        capture_output=True, text=True).stdout
        assert any("zz_hostile_tamper.pth" in c for c in changed), changed
    _assert_contained(run, sandbox=False)
    _assert_forgery_named(run, name)
    assert "sandbox: NONE" in run.output
    if name in ("orphans", "fork_storm", "forge_results"):  # the sweep found them, not the test
        assert run.results["extra_data"]["processes_left_behind"] >= 1


def test_killing_the_grader_without_a_sandbox_leaves_an_unfinished_results_file(tmp_path: Path) -> None:
    """Without bubblewrap a child can kill the grader; the results.json written at the start says grading did not
    finish, with score 0 (the weaker guarantee, stated), and no process of the run is left."""
    run = _grade("kill_parent", tmp_path, sandbox=False)
    assert run.returncode == -signal.SIGKILL, run.output[-2000:]
    assert run.results["extra_data"]["unfinished"] is True and run.results["score"] == 0
    assert run.results["extra_data"]["sandbox"]["kind"] == "none"
    assert run.survivors == []


#: The step tests whose probes run documents through the harness (``documents``, ``deadline``, ``batch_pass``).
STEP_FILES = ("test_04_concurrency.py", "test_04_deadline.py", "test_05_resume.py", "test_06_metrics.py")


@pytest.mark.parametrize("sandbox", [pytest.param(True, marks=needs_bwrap, id="bubblewrap"),
                                     pytest.param(False, id="fallback")])
def test_forging_the_step_probes_records_earns_no_step_point(sandbox: bool, tmp_path: Path) -> None:
    """forge_probe answers its own calls and writes their ledger lines from the probe (through the ledger objects,
    the harness's socket, the files it can reach); it earns none of steps 04-06's points, each test naming the
    forgery or the commits no call backed, with and without bubblewrap."""
    run = _grade("forge_probe", tmp_path, sandbox=sandbox, files=STEP_FILES, select=None)
    _assert_contained(run, sandbox=sandbox)
    tests = run.results["tests"]
    assert len(tests) == 19, [t["name"] for t in tests]
    unexplained = [t["number"] for t in tests
                   if "forged records" not in t["output"] and "outputs-backed-by-calls" not in t["output"]]
    assert unexplained == [], run.results_text[:3000]
    refused = "ledger events sent that only the harness writes"
    assert refused in run.results_text
    if not sandbox:  # it found the grader's open ledgers and appended to them
        assert "the ledger holds lines the harness did not write" in run.results_text
