"""The teacher dashboard: its model (real worker processes, real SIGKILL) and its widgets, headless.

Batches are small and the simulated latency short, so that a pass lasts about a
second: long enough to press Crash now in the middle, short enough for CI.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from batchlab.cli import main as cli_main
from batchlab.contract import DEGRADED, DONE, FAILED, PENDING, PROCESSING
from batchlab.defaults import LESSON
from batchlab.documents import Batch, Document, ident_of, parse_document, try_parse
from batchlab.examples import make_documents
from batchlab.faults import FaultPlan
from batchlab.host import pid_alive
from batchlab.ledger import read_events
from batchlab.paths import solution_module
from batchlab.rundir import RunDir
from batchlab.service import LatencyModel, guaranteed_busy_s
from batchlab.teach.dashboard.board import (
    ERROR,
    FINISHED,
    IDLE,
    KILLED,
    MANUAL_KILL,
    RUNNING,
    DashboardError,
    DashboardSettings,
    Snapshot,
    StateBoard,
)
from batchlab.teach.dashboard.model import DashboardModel
from batchlab.teach.dashboard.render import completion_svg, counts_html, metrics_html, resources_html
from batchlab.teach.dashboard.timeline import Timeline
from batchlab.teach.dashboard.view import BACKFILL, DISCONNECT, RECONNECT, Dashboard

#: A pass of about a second: 40 documents (~500 service calls), 4 at a time, 10 ms per call.
QUICK = DashboardSettings(documents=40, concurrency=4, latency_ms=10.0, fault_rate=0.03)


@pytest.fixture
def quick_model(tmp_path: Path, reference_impl: Path) -> Iterator[DashboardModel]:
    """A model running the reference on small, quick batches in a test folder; closed afterwards."""
    model = DashboardModel(impl=reference_impl, settings=QUICK, runs_dir=tmp_path)
    yield model
    model.close()


@pytest.fixture
def dashboard(quick_model: DashboardModel) -> Iterator[Dashboard]:
    """The widget view over a quick model, refreshing every 50 ms."""
    dash = Dashboard(quick_model, refresh_s=0.05)
    yield dash
    dash.close()


def _doc(doc_id: str, content: str = "Some text about checkpoints.", source: str = "wiki") -> dict[str, str]:
    return {"id": doc_id, "content": content, "source": source}


class TestStateBoard:
    """Counts per state, folded from ledger events."""

    def test_duplicates_fold_into_one_document_and_each_invalid_entry_counts_once(self) -> None:
        board = StateBoard([_doc("a"), _doc(" A "), _doc("b"), {"source": "wiki", "content": "no id"},
                            {"id": "bad", "content": 42}])
        assert board.total == 4
        assert board.counts() == {PENDING: 4, PROCESSING: 0, DONE: 0, DEGRADED: 0, FAILED: 0}

    def test_a_commit_sets_done_or_degraded_by_its_mode_and_a_later_call_never_undoes_it(self) -> None:
        a, b = parse_document(_doc("a")), parse_document(_doc("b", "Other text."))
        board = StateBoard([_doc("a"), _doc("b", "Other text.")])
        board.apply({"ev": "call_start", "ident": ident_of(a), "attempt": 1})
        board.apply({"ev": "call_start", "ident": ident_of(b), "attempt": 1})
        assert board.counts()[PROCESSING] == 2
        board.apply({"ev": "sink_put", "ident": ident_of(a), "mode": "full", "writes": 1})
        board.apply({"ev": "sink_put", "ident": ident_of(b), "mode": "degraded", "writes": 1})
        board.apply({"ev": "call_start", "ident": ident_of(a), "attempt": 1})
        assert board.state[ident_of(a)] == DONE
        assert board.state[ident_of(b)] == DEGRADED

    def test_the_processors_failed_report_marks_an_invalid_entry_failed_even_under_another_name(self) -> None:
        board = StateBoard([_doc("a"), {"id": "bad", "content": 42}, {"source": "x", "content": "no id"}])
        board.apply({"ev": "state", "doc_id": "bad", "state": FAILED})
        board.apply({"ev": "state", "doc_id": "entry-without-id", "state": FAILED})
        assert board.counts()[FAILED] == 2
        assert board.counts()[PENDING] == 1

    def test_retries_and_duplicate_executions_are_counted_from_calls_and_commits(self) -> None:
        a = parse_document(_doc("a"))
        board = StateBoard([_doc("a")])
        for attempt in (1, 2, 3):
            board.apply({"ev": "call_start", "ident": ident_of(a), "attempt": attempt})
        board.apply({"ev": "sink_put", "ident": ident_of(a), "mode": "full", "writes": 1})
        board.apply({"ev": "sink_put", "ident": ident_of(a), "mode": "full", "writes": 2})
        assert (board.calls, board.retries, board.duplicates) == (3, 2, 1)


class TestTimeline:
    """The completion curve and its markers, folded from ledger events without starting anything."""

    def test_commits_draw_the_curve_and_interruptions_and_resumes_mark_it(self) -> None:
        a, b = parse_document(_doc("a")), parse_document(_doc("b", "Other text."))
        line = Timeline(Batch([_doc("a"), _doc("b", "Other text.")]), t_start=100.0, clock=lambda: 100.0)
        line.fold([{"ev": "sink_put", "t": 101.0, "ident": ident_of(a), "mode": "full"},
                   {"ev": "kill", "t": 102.0, "kind": MANUAL_KILL}])
        line.new_pass(2, 103.0)
        line.fold([{"ev": "sink_put", "t": 104.0, "ident": ident_of(b), "mode": "degraded"},
                   {"ev": "pass_end", "t": 104.5}])
        assert line.series == [(0.0, 0), (1.0, 1), (4.0, 2)]
        assert [(m.t, m.kind, m.label) for m in line.markers] == [
            (2.0, "crash", "手动崩溃 Crash now"), (3.0, "resume", "恢复 resume (pass 2)")]
        assert line.pass_over

    def test_the_service_going_down_and_up_marks_the_curve(self) -> None:
        line = Timeline(None, t_start=0.0, clock=lambda: 0.0)
        line.fold([{"ev": "outage", "t": 1.5, "state": "down", "source": "switch"},
                   {"ev": "outage", "t": 4.0, "state": "up", "source": "none"}])
        assert [(m.t, m.kind, m.label) for m in line.markers] == [
            (1.5, "outage", "外部模型断开 outage"), (4.0, "outage", "连接恢复 reconnected")]

    def test_the_latest_resource_sample_is_kept(self) -> None:
        line = Timeline(None, t_start=0.0, clock=lambda: 0.0)
        line.fold([{"ev": "resource", "t": 1.0, "cpu_percent": 5.0, "rss_bytes": 1},
                   {"ev": "resource", "t": 2.0, "cpu_percent": 7.5, "rss_bytes": 2}])
        assert line.resources == {"cpu_percent": 7.5, "rss_bytes": 2} and not line.pass_over


class TestDashboardSettings:
    def test_the_defaults_are_the_lessons_but_a_slower_service(self) -> None:
        """Seed, fault rate, concurrency and batch size are ``LESSON``'s; the latency is doubled on purpose."""
        s = DashboardSettings()
        assert (s.seed, s.fault_rate, s.concurrency, s.documents, s.latency_ms) == (
            LESSON.seed, LESSON.fault_rate, LESSON.concurrency, LESSON.documents, 2 * LESSON.latency_ms)

    def test_a_bad_setting_is_refused_with_the_unified_error(self) -> None:
        with pytest.raises(DashboardError) as info:
            DashboardSettings(documents=0, crash="sometimes").validate()
        error = info.value.to_dict()["error"]
        assert error["code"] == "bad_setting"
        assert set(error["details"]) == {"documents", "crash"}
        assert error["hints"]


@dataclass
class Story:
    """The lesson's story told once on a real worker: run, Crash now at a quarter, wait, Resume."""

    model: DashboardModel
    early: Snapshot
    later: Snapshot
    early_pid_alive: bool
    killed: Snapshot
    killed_pid: int
    after_wait: Snapshot
    final: Snapshot


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    """One run of the reference with a manual crash and a resume, shared by the tests that read it."""
    model = DashboardModel(impl=solution_module(), settings=QUICK, runs_dir=tmp_path_factory.mktemp("story"))
    try:
        model.run()
        early = model.wait_until(lambda s: s.finished > 0, timeout=60, interval=0.01)
        alive = early.pid is not None and pid_alive(early.pid)
        later = model.wait_until(lambda s: s.fraction >= 0.25, timeout=60, interval=0.01)
        pid = model.crash_now()
        killed = model.snapshot()
        time.sleep(0.3)
        after_wait = model.poll()
        model.resume()
        final = model.wait(timeout=60)
        yield Story(model, early, later, alive, killed, pid, after_wait, final)
    finally:
        model.close()


@pytest.mark.slow
class TestDashboardModel:
    """The actions on real worker processes."""

    def test_run_starts_a_real_worker_and_progress_grows_while_it_runs(self, story: Story) -> None:
        assert story.early.phase == RUNNING and story.early.pid not in (None, os.getpid())
        assert story.early_pid_alive
        assert story.later.finished > story.early.finished

    def test_crash_now_sigkills_the_worker_and_the_counts_stop(self, story: Story) -> None:
        killed = story.killed
        assert killed.phase == KILLED and not killed.live
        assert killed.passes[0].outcome == "killed" and killed.passes[0].pid == story.killed_pid
        assert not pid_alive(story.killed_pid)
        assert 0 < killed.finished < killed.total
        assert story.after_wait.counts == killed.counts
        assert story.model.run_dir is not None
        kills = [e for e in read_events(story.model.run_dir / "ledger.jsonl") if e["ev"] == "kill"]
        assert [(k["kind"], k["by"], k["pass"]) for k in kills] == [(MANUAL_KILL, "teacher", 1)]

    def test_after_a_crash_the_metrics_show_the_batch_unfinished(self, story: Story) -> None:
        rows = {row.label: row for row in story.killed.metrics}
        assert rows["completion rate"].ok is False
        assert story.killed.metrics_ok is False

    def test_resume_finishes_the_batch_with_no_duplicate(self, story: Story) -> None:
        final = story.final
        assert final.phase == FINISHED
        assert final.counts[PENDING] == final.counts[PROCESSING] == 0 and final.finished == final.total
        assert final.duplicates == 0
        metrics = story.model.metrics
        assert metrics is not None and metrics.duplicates == [] and metrics.missing == []
        assert final.metrics_ok is True
        assert [m.kind for m in final.markers] == ["crash", "resume"]
        assert final.markers[0].t < final.markers[1].t
        assert [p.outcome for p in final.passes] == ["killed", "ok"]

    @pytest.mark.parametrize("kind", ["during_call", "after_commit", "random"])
    def test_a_planned_crash_kills_pass_one_and_resume_recovers_exactly_once(
            self, quick_model: DashboardModel, kind: str) -> None:
        quick_model.configure(crash=kind, documents=30, latency_ms=6.0, random_window=(0.05, 0.2))
        if kind == "random":  # the batch's longest document outlasts the latest kill, however fast the machine
            docs = [d for d in map(try_parse, make_documents(30, seed=quick_model.settings.seed))
                    if isinstance(d, Document)]
            plan, latency = FaultPlan(seed=quick_model.settings.seed), LatencyModel(median_ms=6.0)
            assert max(guaranteed_busy_s(d, plan, latency) for d in docs) >= 2.5 * 0.2
        quick_model.run()
        killed = quick_model.wait(timeout=60)
        assert killed.phase == KILLED and killed.finished < killed.total
        quick_model.resume()
        done = quick_model.wait(timeout=60)
        assert done.phase == FINISHED and done.finished == done.total and done.duplicates == 0

    def test_reset_kills_a_running_worker_and_removes_its_temporary_run_dir(self, reference_impl: Path) -> None:
        model = DashboardModel(impl=reference_impl, settings=QUICK)
        try:
            snap = model.run()
            run_dir = Path(str(snap.run_dir))
            assert run_dir.is_dir() and snap.pid is not None
            cleared = model.reset()
            assert not pid_alive(snap.pid)
            assert not run_dir.exists()
            assert cleared.phase == IDLE and cleared.total == 0 and cleared.run_dir is None
        finally:
            model.close()

    def test_actions_that_do_not_fit_the_state_are_refused(self, quick_model: DashboardModel) -> None:
        with pytest.raises(DashboardError) as no_run:
            quick_model.resume()
        assert no_run.value.code == "no_run"
        with pytest.raises(DashboardError) as idle:
            quick_model.crash_now()
        assert idle.value.code == "not_running"
        with pytest.raises(DashboardError) as no_batch:
            quick_model.set_outage(True)
        assert no_batch.value.code == "no_run"
        quick_model.run()
        with pytest.raises(DashboardError) as running:
            quick_model.resume()
        assert running.value.code == "still_running"

    def test_an_implementation_that_fails_to_import_shows_an_error(self, tmp_path: Path) -> None:
        broken = tmp_path / "broken.py"
        broken.write_text("raise RuntimeError('half-written module')\n", encoding="utf-8")
        model = DashboardModel(impl=broken, settings=QUICK, runs_dir=tmp_path / "runs")
        try:
            model.run()
            snap = model.wait(timeout=60)
            assert snap.phase == ERROR
            assert "import error" in snap.message and "half-written module" in snap.message
        finally:
            model.close()


@pytest.mark.slow
class TestDashboardView:
    """The widgets, driven by clicking the real buttons."""

    def test_clicking_run_crash_resume_and_reset_drives_the_model_and_the_widgets_follow(
            self, dashboard: Dashboard) -> None:
        dashboard.run_button.click()
        assert dashboard.run_button.disabled and not dashboard.crash_button.disabled
        deadline = time.monotonic() + 60
        while dashboard.progress.value < dashboard.progress.max * 0.25:  # only the refresher thread moves it
            assert time.monotonic() < deadline, "the progress bar never moved"
            time.sleep(0.01)
        dashboard.crash_button.click()
        assert 'data-phase="killed"' in dashboard.status.value
        stopped = dashboard.progress.value
        assert 0 < stopped < dashboard.progress.max
        assert "✘ FAIL" in dashboard.metrics.value
        assert not dashboard.resume_button.disabled and dashboard.crash_button.disabled
        time.sleep(0.3)
        assert dashboard.progress.value == stopped

        dashboard.resume_button.click()
        dashboard.wait(timeout=60)
        assert dashboard.progress.value == dashboard.progress.max
        assert 'data-phase="finished"' in dashboard.status.value
        assert dashboard.metrics.value.count("✔ PASS") == 4 and "FAIL" not in dashboard.metrics.value
        assert 'data-kind="crash"' in dashboard.plot.value and 'data-kind="resume"' in dashboard.plot.value
        assert '<div class="bl-tile" data-state="duplicates" style="background:#111827"><div class="bl-n">0<' \
            in dashboard.counts.value

        dashboard.reset_button.click()
        assert 'data-phase="idle"' in dashboard.status.value and dashboard.progress.value == 0
        assert dashboard.resume_button.disabled

    def test_the_outage_toggle_disconnects_the_model_mid_pass_and_reconnects_it(self, dashboard: Dashboard) -> None:
        """断开外部模型 / 恢复连接: calls fail fast while it is off, the batch still ends complete, the plot marks both."""
        assert dashboard.outage_button.disabled  # no batch yet
        dashboard.run_button.click()
        dashboard.outage_button.click()
        assert dashboard.outage_button.description == RECONNECT and "bl-outage-on" in dashboard.status.value
        run_dir = dashboard.model.run_dir
        assert run_dir is not None

        def refused() -> int:
            ledger = RunDir(run_dir).ledger
            return sum(e.get("error") == "unreachable" for e in read_events(ledger)) if ledger.exists() else 0

        deadline = time.monotonic() + 60
        while refused() < 3:
            assert time.monotonic() < deadline, "no call met the outage"
            time.sleep(0.01)
        dashboard.outage_button.click()
        assert dashboard.outage_button.description == DISCONNECT and "bl-outage-on" not in dashboard.status.value
        dashboard.wait(timeout=60)
        assert dashboard.progress.value == dashboard.progress.max
        assert dashboard.plot.value.count('data-kind="outage"') == 2
        states = [e["state"] for e in read_events(RunDir(run_dir).ledger) if e["ev"] == "outage"]
        assert states == ["down", "up"]

    def test_the_backfill_button_upgrades_the_degraded_documents_with_no_duplicate(self, dashboard: Dashboard) -> None:
        """补齐降级文档: a pass run disconnected degrades documents; once reconnected, backfill makes each one full."""
        assert dashboard.backfill_button.disabled and dashboard.backfill_button.description == BACKFILL
        dashboard.run_button.click()
        dashboard.outage_button.click()  # every call fails fast from here: the documents left take the degraded path
        dashboard.wait(timeout=60)
        degraded = dashboard.model.snapshot().counts[DEGRADED]
        assert degraded > 0 and dashboard.backfill_button.disabled  # refused while the service is down
        dashboard.outage_button.click()
        assert not dashboard.backfill_button.disabled
        dashboard.backfill_button.click()
        assert "backfill" in dashboard.status.value
        snap = dashboard.wait(timeout=60)
        metrics = dashboard.model.metrics
        assert metrics is not None and snap.counts[DEGRADED] == 0 == metrics.committed_degraded
        assert metrics.upgraded == degraded and metrics.duplicates == [] and snap.duplicates == 0
        assert metrics.passes[-1].upgraded == degraded and metrics.passes[-1].redone == degraded
        assert "upgraded (backfill)" in dashboard.metrics.value and "checkpoint hit rate" in dashboard.metrics.value
        spec = RunDir(dashboard.model.run_dir or Path()).spec.read_text(encoding="utf-8")
        assert '"backfill": true' not in spec  # the next Resume runs with the batch's own settings
        dashboard.backfill_button.click()  # again: nothing degraded is said, not raised, and no pass runs
        assert "0 upgraded" in dashboard.status.value and not dashboard.model.live
        assert len(dashboard.model.snapshot().passes) == len(snap.passes)

    def test_the_controls_set_the_models_settings(self, dashboard: Dashboard) -> None:
        dashboard.fault_rate.value = 5
        dashboard.concurrency.value = 16
        dashboard.documents.value = 200
        dashboard.crash.value = "after_commit"
        settings = dashboard.model.settings
        assert (settings.fault_rate, settings.concurrency, settings.documents, settings.crash) == (
            0.05, 16, 200, "after_commit")

    def test_a_refused_click_is_shown_on_the_dashboard_not_raised(self, dashboard: Dashboard) -> None:
        dashboard.resume_button.click()
        assert "nothing to resume" in dashboard.status.value
        dashboard.backfill_button.click()
        assert "nothing to backfill" in dashboard.status.value


class TestRenderers:
    """The HTML and SVG the widgets show, from a snapshot."""

    def test_the_plot_marks_each_crash_in_red_and_each_resume_in_green(self, story: Story) -> None:
        svg = completion_svg(story.final)
        assert svg.count('class="bl-marker"') == 2
        assert 'data-kind="crash" ' in svg and 'stroke="#dc2626"' in svg
        assert 'data-kind="resume" ' in svg and 'stroke="#16a34a"' in svg
        assert '<polyline class="bl-line"' in svg

    def test_counts_and_metrics_before_any_run(self, quick_model: DashboardModel) -> None:
        snap = quick_model.snapshot()
        assert counts_html(snap).count('class="bl-tile"') == 7
        assert "PASS" not in metrics_html(snap) and "FAIL" not in metrics_html(snap)


def test_batchlab_dashboard_prints_the_command_that_opens_the_teacher_notebook(
        capsys: pytest.CaptureFixture[str], repo_root: Path) -> None:
    assert cli_main(["dashboard", "--print-command"]) == 0
    out = capsys.readouterr().out
    assert "jupyter lab" in out and str(repo_root / "notebooks" / "teacher_demo.ipynb") in out


def test_no_worker_outlives_its_model(reference_impl: Path, tmp_path: Path) -> None:
    """close() (also run at interpreter exit) SIGKILLs a worker that is still running."""
    model = DashboardModel(impl=reference_impl, settings=QUICK, runs_dir=tmp_path)
    pid = model.run().pid
    assert pid is not None and pid_alive(pid)
    model.close()
    assert not pid_alive(pid)


@pytest.mark.slow
def test_a_kernel_that_shuts_down_takes_its_running_worker_with_it(tmp_path: Path) -> None:
    """A notebook closed mid-run leaves no worker behind: the kernel's exit kills it (atexit)."""
    from jupyter_client.manager import start_new_kernel

    kernel, client = start_new_kernel(kernel_name="python3")
    try:
        out: list[str] = []
        code = ("from batchlab.teach.dashboard.model import DashboardModel, DashboardSettings\n"
                "settings = DashboardSettings(documents=300, latency_ms=50)\n"  # a pass of about half a minute
                f"model = DashboardModel(settings=settings, runs_dir={str(tmp_path)!r})\n"
                "print(model.run().pid)")
        client.execute_interactive(code, timeout=60, output_hook=lambda msg: out.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
        pid = int("".join(out).strip())
        assert pid_alive(pid)
    finally:
        client.stop_channels()
        kernel.shutdown_kernel(now=False)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


@pytest.mark.slow
def test_a_running_worker_is_sampled_about_once_a_second_shown_and_kept_in_the_ledger(tmp_path: Path) -> None:
    settings = DashboardSettings(documents=60, concurrency=4, latency_ms=40.0, fault_rate=0.0)
    docs = [d for d in map(try_parse, make_documents(60, seed=settings.seed)) if isinstance(d, Document)]
    busy = max(guaranteed_busy_s(d, FaultPlan(seed=settings.seed), LatencyModel(median_ms=40.0)) for d in docs)
    assert busy >= 3.0, "the batch's longest document must keep the pass busy for a few samples"
    model = DashboardModel(impl=solution_module(), settings=settings, runs_dir=tmp_path)
    try:
        model.run()
        sampled = model.wait_until(lambda s: s.resources is not None or not s.live, timeout=120, interval=0.02)
        final = model.wait(timeout=120)
        run_dir, metrics = model.run_dir, model.metrics
    finally:
        model.close()
    assert sampled.live and sampled.resources is not None, "no sample while the worker ran"
    assert sampled.resources["rss_bytes"] > 10 * 1024 * 1024 and sampled.resources["disk_bytes"] > 0
    assert 'data-rss="' in resources_html(sampled) and "MB" in resources_html(sampled)
    assert final.resources is not None and run_dir is not None
    events = read_events(run_dir / "ledger.jsonl")
    samples = [e for e in events if e["ev"] == "resource"]
    assert samples and {(e["by"], e["pass"]) for e in samples} == {("dashboard", 1)}
    last_work = max(i for i, e in enumerate(events) if e["ev"] != "resource")
    assert all(i < last_work for i, e in enumerate(events) if e["ev"] == "resource"), "a sample after the pass ended"
    assert metrics is not None and metrics.completion_rate == 1.0
