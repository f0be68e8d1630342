"""In-notebook checks: step names, fresh imports of the student module, guarded cells, and check(step)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from batchlab.cli import main
from batchlab.teach import notebook
from batchlab.teach import selfcheck as checks
from batchlab.teach.notebook import load_student, overview, show_passes, student_cell
from batchlab.teach.selfcheck import CheckResult, UnknownStepError, check, normalize_step


@pytest.fixture(autouse=True)
def not_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    """Student mode: BATCHLAB_STRICT (the notebook tests' switch) is off unless a test turns it on."""
    monkeypatch.delenv("BATCHLAB_STRICT", raising=False)


@pytest.fixture
def impl_file(tmp_path: Path) -> Path:
    """A tiny implementation file whose ``VERSION`` a test can rewrite."""
    path = tmp_path / "impl.py"
    path.write_text("VERSION = 1\n", encoding="utf-8")
    return path


@pytest.fixture
def grader_that_hangs(tmp_path: Path) -> Path:
    """A grader folder whose only test sleeps far longer than any timeout a test gives."""
    grader = tmp_path / "hanging" / "grader"
    grader.mkdir(parents=True)
    (grader / "conftest.py").write_text(
        "def pytest_addoption(parser):\n"
        "    for name in ('--impl', '--step', '--results'):\n"
        "        parser.addoption(name)\n", encoding="utf-8")
    (grader / "test_hang.py").write_text("import time\n\ndef test_forever():\n    time.sleep(600)\n", encoding="utf-8")
    return grader


@pytest.fixture
def grader_that_crashes(tmp_path: Path) -> Path:
    """A grader folder whose conftest raises at import, so no results.json is ever written."""
    grader = tmp_path / "crashing" / "grader"
    grader.mkdir(parents=True)
    (grader / "conftest.py").write_text("raise RuntimeError('grader bug: cannot start')\n", encoding="utf-8")
    return grader


@pytest.fixture(scope="module")
def skeleton_checkpoint_result(skeleton_impl: Path) -> CheckResult:
    """check("checkpoint") run by the real grader on the generated skeleton (shared: one grader run)."""
    return check("checkpoint", impl=skeleton_impl)


class TestNormalizeStep:
    @pytest.mark.parametrize("given", ["checkpoint", "01", "1", 1, " Checkpoint "])
    def test_a_name_or_a_notebook_number_names_the_step(self, given: object) -> None:
        assert normalize_step(given) == "checkpoint"  # type: ignore[arg-type]

    def test_every_notebook_number_maps_to_the_grader_step_names(self) -> None:
        assert [normalize_step(n) for n in range(1, 7)] == [
            "checkpoint", "idempotency", "backoff", "concurrency", "resume", "metrics"]

    def test_an_unknown_step_raises_the_unified_error(self) -> None:
        with pytest.raises(UnknownStepError) as info:
            normalize_step("07")
        error = info.value.to_dict()["error"]
        assert error["code"] == "unknown_step" and "checkpoint" in error["hints"][0]


class TestLoadStudent:
    def test_it_imports_the_file_named_by_batchlab_impl(self, impl_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BATCHLAB_IMPL", str(impl_file))
        assert load_student().VERSION == 1

    def test_an_edit_is_picked_up_by_the_next_call_without_a_restart(self, impl_file: Path) -> None:
        first = load_student(impl_file)
        impl_file.write_text("VERSION = 2\n", encoding="utf-8")
        second = load_student(impl_file)
        assert (first.VERSION, second.VERSION) == (1, 2)
        assert first is not second

    def test_the_lazy_export_from_batchlab_is_the_same_function(self) -> None:
        import batchlab

        assert batchlab.load_student is load_student and batchlab.check is check


class TestStudentCell:
    def test_an_unfinished_step_becomes_a_todo_note_instead_of_an_error(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.delenv("BATCHLAB_STRICT", raising=False)
        with student_cell("step 01") as note:
            raise NotImplementedError("TODO step 01: open the store")
        assert note.todo and "TODO step 01" in note.text()
        assert "TODO step 01" in capsys.readouterr().out

    def test_a_bug_is_shown_with_its_place_in_the_student_file(
        self, impl_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delenv("BATCHLAB_STRICT", raising=False)
        monkeypatch.setenv("BATCHLAB_IMPL", str(impl_file))
        impl_file.write_text("def broken():\n    return 1 / 0\n", encoding="utf-8")
        with student_cell("step 02") as note:
            load_student().broken()
        assert not note.todo
        assert "ZeroDivisionError" in note.text() and "impl.py:2 in broken" in note.text()

    def test_strict_mode_lets_every_error_through(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("BATCHLAB_STRICT", "1")
        with pytest.raises(NotImplementedError):
            with student_cell("step 01"):
                raise NotImplementedError("TODO step 01")

    def test_a_cell_that_works_leaves_no_note(self) -> None:
        with student_cell("step 01") as note:
            pass
        assert note.error is None and note.text() == ""


class TestOverview:
    def test_the_skeleton_has_todos_in_every_step(self, skeleton_impl: Path) -> None:
        todo = overview(skeleton_impl).todo
        assert all(todo.get(num, 0) > 0 for num in checks.STEPS), todo

    def test_the_reference_has_none(self, reference_impl: Path) -> None:
        view = overview(reference_impl)
        assert all(done for *_, done in view.rows())
        assert "待完成" not in view._repr_html_() and "TODO x" not in view.text()

    def test_a_missing_file_is_reported_not_raised(self, tmp_path: Path) -> None:
        assert "cannot read" in overview(tmp_path / "nope.py").text()


@pytest.fixture(scope="module")
def skeleton_passes(tmp_path_factory: pytest.TempPathFactory, skeleton_impl: Path) -> list[Any]:
    """Two real worker passes of the untouched skeleton over five documents (both raise NotImplementedError)."""
    from batchlab.examples import make_documents, write_input
    from batchlab.runner import RunSpec, run_passes

    work = tmp_path_factory.mktemp("skeleton-run")
    spec = RunSpec(impl=skeleton_impl, input=write_input(work / "in.json", make_documents(5, max_bytes=500)),
                   run_dir=work / "run", timeout_s=60)
    return run_passes(spec, [])


class TestShowPasses:
    def test_a_pass_stopped_by_a_todo_shows_the_todo_line(self, skeleton_passes: list[Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        lines = show_passes(skeleton_passes)
        assert lines[0].startswith("pass 1: raised")
        assert "TODO step 05" in lines[1] and "asyncio" not in capsys.readouterr().out

    def test_strict_mode_refuses_a_pass_that_did_not_end_as_planned(
        self, skeleton_passes: list[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BATCHLAB_STRICT", "1")
        with pytest.raises(RuntimeError, match="pass 1: raised"):
            show_passes(skeleton_passes)


class TestCheckWithTheRealGrader:
    def test_the_reference_passes_every_public_check_of_the_step_named_in_the_headline(
        self, reference_impl: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["check", "01", "--impl", str(reference_impl), "--json"])
        result = json.loads(capsys.readouterr().out)
        assert code == 0, result
        assert result["status"] == "passed" and result["step"] == "checkpoint"
        assert result["total"] > 0 and result["passed"] == result["total"]
        assert result["headline"] == f"{result['total']}/{result['total']} public checks of step 01 passed."
        # The grader's count is kept as data; the sentence about it belongs to the whole grader's run only.
        assert result["hidden_scenarios"] > 0

    def test_a_step_check_does_not_repeat_the_hidden_scenarios_sentence(
        self, skeleton_checkpoint_result: CheckResult
    ) -> None:
        """Issue 8 item 7: "M hidden scenarios run at grading" is said once, by `pytest grader`, not per step."""
        for view in (skeleton_checkpoint_result.text(), skeleton_checkpoint_result._repr_html_()):
            assert "hidden" not in view and "隐藏" not in view
        green = CheckResult(step="resume", impl=Path("m.py"), status="passed", hidden_scenarios=4,
                            tests=[checks.TestOutcome("05.1: resume", True, 3, 3)])
        assert "hidden" not in green.text() and "隐藏" not in green.text()
        assert "第 05 步的公开检查全部通过 (1/1)" in green.headline_zh()

    def test_the_skeleton_fails_with_todo_feedback(self, skeleton_checkpoint_result: CheckResult) -> None:
        result = skeleton_checkpoint_result
        assert result.status == "failed" and result.total > 0 and result.passed == 0
        assert all("TODO step 01" in t.output for t in result.tests), [t.output for t in result.tests]

    def test_the_notebook_view_is_html_with_every_check_and_the_step_headline(
        self, skeleton_checkpoint_result: CheckResult
    ) -> None:
        page = skeleton_checkpoint_result._repr_html_()
        assert page.startswith("<div") and "public checks of step 01 passed" in page
        for t in skeleton_checkpoint_result.tests:
            assert t.name.split(":")[0] in page
        assert "TODO step 01" in page

    def test_the_terminal_view_is_plain_text(self, skeleton_checkpoint_result: CheckResult) -> None:
        text = str(skeleton_checkpoint_result)
        assert "<" not in text.splitlines()[1] and "FAIL" in text and "TODO step 01" in text


class TestCheckNeverRaises:
    def test_a_missing_grader_is_a_readable_message(self, reference_impl: Path, tmp_path: Path) -> None:
        result = check("checkpoint", impl=reference_impl, grader_dir=tmp_path / "no-grader")
        assert result.status == "error" and "grader is not installed" in result.message

    def test_a_missing_implementation_is_a_readable_message(self, tmp_path: Path) -> None:
        result = check("checkpoint", impl=tmp_path / "gone.py")
        assert result.status == "error" and "not found" in result.message

    def test_an_unknown_step_is_a_readable_message(self, reference_impl: Path) -> None:
        result = check("08", impl=reference_impl)
        assert result.status == "error" and "unknown step" in result.message
        assert "could not run" in str(result)

    def test_a_grader_that_hangs_is_stopped_at_the_timeout(self, reference_impl: Path,
                                                          grader_that_hangs: Path) -> None:
        result = check("checkpoint", impl=reference_impl, grader_dir=grader_that_hangs, timeout_s=3)
        assert result.status == "error" and "did not finish within 3 s" in result.message

    def test_a_grader_that_crashes_is_reported_with_its_output(self, reference_impl: Path,
                                                              grader_that_crashes: Path) -> None:
        result = check("checkpoint", impl=reference_impl, grader_dir=grader_that_crashes)
        assert result.status == "error"
        assert "without writing results.json" in result.message and "grader bug: cannot start" in result.message


    def test_strict_mode_turns_a_check_that_is_not_green_into_an_assertion(
        self, reference_impl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("BATCHLAB_STRICT", "1")
        with pytest.raises(AssertionError, match="grader is not installed"):
            check("checkpoint", impl=reference_impl, grader_dir=tmp_path / "no-grader")


class TestCommandLine:
    def test_an_unknown_step_is_bad_input_with_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["check", "nope"]) == 2
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "unknown_step"

    def test_a_missing_impl_file_is_bad_input_with_exit_2(self, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["check", "checkpoint", "--impl", str(tmp_path / "gone.py")]) == 2
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "file_not_found"

    def test_the_verb_is_registered_in_the_kit_cli(self) -> None:
        import subprocess

        out = subprocess.run([sys.executable, "-m", "batchlab", "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "public tests of one step" in " ".join(out.stdout.split())


class TestWorkDir:
    """Issue 8 item 7: a notebook's scratch folder (up to 8 MB of runs) is gone once its kernel exits."""

    SCRIPT = (
        "import sys\n"
        "from batchlab.teach.notebook import work_dir\n"
        "work = work_dir('lesson15-test-')\n"
        "(work / 'run').mkdir()\n"
        "(work / 'run' / 'ledger.jsonl').write_bytes(b'x' * 2_000_000)\n"
        "print(work, flush=True)\n"
        "if sys.argv[1:] == ['fail']:\n"
        "    raise RuntimeError('a cell blew up')\n"
    )

    def _run_child(self, tmp_path: Path, *args: str) -> tuple[Any, Path]:
        import os
        import subprocess

        env = {**os.environ, "TMPDIR": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-c", self.SCRIPT, *args], capture_output=True, text=True,
                              env=env, timeout=60)
        work = Path(proc.stdout.strip().splitlines()[0])
        return proc, work

    def test_a_python_process_that_used_it_leaves_nothing_behind(self, tmp_path: Path) -> None:
        proc, work = self._run_child(tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert work.parent == tmp_path and work.name.startswith("lesson15-test-")
        assert not work.exists() and list(tmp_path.iterdir()) == []

    def test_it_is_removed_even_when_the_process_ends_with_an_error(self, tmp_path: Path) -> None:
        proc, work = self._run_child(tmp_path, "fail")
        assert proc.returncode == 1 and "a cell blew up" in proc.stderr
        assert not work.exists()

    def test_a_process_killed_by_sigkill_leaves_nothing_behind_either(self, tmp_path: Path) -> None:
        """No atexit hook runs after SIGKILL: the reaper process removes the folder."""
        import os
        import signal
        import subprocess

        script = self.SCRIPT + "import time\ntime.sleep(60)\n"
        proc = subprocess.Popen([sys.executable, "-c", script, "stay"], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "TMPDIR": str(tmp_path)})
        work = Path(proc.stdout.readline().strip())
        assert work.is_dir() and (work / "run" / "ledger.jsonl").stat().st_size == 2_000_000
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        proc.stdout.close()
        assert _gone_within(work, 15), f"{work} is still there 15 s after its owner was killed"
        assert list(tmp_path.iterdir()) == []

    def test_it_stays_while_the_process_lives(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TMPDIR", str(tmp_path))
        import tempfile

        monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
        work = notebook.work_dir("lesson15-alive-")
        assert work.is_dir() and work.parent == tmp_path
        time.sleep(0.5)  # the reaper is running and waits for this process, it does not remove the folder now
        assert work.is_dir()
        notebook._remove_work_dir(work, owner_pid=-1)  # a forked child's copy of the hook: not the owner
        assert work.is_dir()
        notebook._remove_work_dir(work, owner_pid=__import__("os").getpid())
        assert not work.exists()

    @pytest.mark.parametrize("now", [False, True], ids=["graceful-shutdown", "killed-like-nbval"])
    def test_a_jupyter_kernel_that_used_it_leaves_nothing_behind(self, tmp_path: Path, now: bool) -> None:
        import os

        jupyter_client = pytest.importorskip("jupyter_client")
        km, kc = jupyter_client.manager.start_new_kernel(
            kernel_name="python3", env={**os.environ, "TMPDIR": str(tmp_path)})
        work = None
        try:
            lines: list[str] = []

            def keep(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    lines.append(msg["content"]["text"])

            reply = kc.execute_interactive(self.SCRIPT.replace("sys.argv[1:]", "[]"), timeout=60,
                                           output_hook=keep)
            assert reply["content"]["status"] == "ok", reply["content"]
            work = Path("".join(lines).strip())
            assert work.is_dir() and work.parent == tmp_path
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=now)
        assert work is not None and _gone_within(work, 15), f"{work} outlived its kernel"
        assert list(tmp_path.iterdir()) == []


def _gone_within(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not path.exists()
