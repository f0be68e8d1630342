"""The teacher demo in a real browser: JupyterLab on loopback, headless Chromium driven by Playwright.

What a teacher does on the projector, end to end: open ``teacher_demo.ipynb``,
run all cells, press Run, press Crash now in the middle, press Resume. The
test reads what the widgets show in the page (progress, counts per state,
phase, metrics) and saves a screenshot of the dashboard.

It installs nothing. It is skipped, with the reason, where Debian's
``chromium`` or the ``playwright`` package (``pip install -e ".[browser]"``) is
missing; ``.ci/run`` provides both. Playwright drives the system Chromium
(``executable_path``); its own browser download is never used. The screenshot
goes to ``$BATCHLAB_ARTIFACT_DIR`` when set, else to the test's temporary folder;
its path is printed and recorded as a test property.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlab.host import pid_alive

from .conftest import Lab, artifact_dir, chromium_page, require_browser, run_all_cells, running_lab

NOTEBOOK = "teacher_demo.ipynb"

sync_api = require_browser()

pytestmark = pytest.mark.slow


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab serving a copy of the teacher notebook on a random loopback port, with a token."""
    with running_lab(tmp_path, [NOTEBOOK]) as lab:
        yield lab


@pytest.fixture
def screenshot_path(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$BATCHLAB_ARTIFACT_DIR`` (CI artifacts) or the test's temporary folder.

    ``teacher_demo_dashboard.png`` shows the end of the story, ``teacher_demo_killed.png`` the
    moment after Crash now, ``teacher_demo_failure.png`` the whole page when the test fails."""
    return artifact_dir(tmp_path) / "teacher_demo_dashboard.png"


@pytest.fixture
def page(jupyterlab: Lab, tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium page (the system Chromium, driven by Playwright)."""
    with chromium_page(tmp_path, viewport={"width": 1280, "height": 2000}, timeout_ms=60_000) as tab:
        yield tab


def _read(page: Any) -> dict[str, Any]:
    """What the dashboard shows: phase, finished/total, the count tiles, and the metric verdicts."""
    return page.evaluate("""() => {
        const root = document.querySelector('.batchlab-dashboard');
        const status = root.querySelector('.bl-status');
        const progress = root.querySelector('.bl-progress-text');
        const tiles = {};
        root.querySelectorAll('.bl-tile').forEach(t => { tiles[t.dataset.state] = Number(t.querySelector('.bl-n').textContent); });
        const verdicts = Array.from(root.querySelectorAll('.bl-metrics tr[data-ok]')).map(r => r.dataset.ok);
        return {phase: status ? status.dataset.phase : null,
                pid: status ? Number(status.dataset.pid) : null,
                kernel_pid: status ? Number(status.dataset.kernelPid) : null,
                finished: progress ? Number(progress.dataset.finished) : null,
                total: progress ? Number(progress.dataset.total) : null,
                tiles: tiles, verdicts: verdicts};
    }""")


def _wait_for(page: Any, script: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(script, timeout=timeout_ms, polling=100)


PHASE = "document.querySelector('.batchlab-dashboard .bl-status')?.dataset.phase"
FINISHED = "Number(document.querySelector('.batchlab-dashboard .bl-progress-text')?.dataset.finished || 0)"
TOTAL = "Number(document.querySelector('.batchlab-dashboard .bl-progress-text')?.dataset.total || 0)"
#: The widgets update one by one: the status can read "killed" before the metric table is redrawn.
VERDICTS = "document.querySelectorAll('.batchlab-dashboard .bl-metrics tr[data-ok]').length"
GREEN = "document.querySelectorAll('.batchlab-dashboard .bl-metrics tr[data-ok=\"True\"]').length"


def test_the_teacher_runs_crashes_and_resumes_the_batch_in_jupyterlab(
        jupyterlab: Lab, page: Any, screenshot_path: Path, record_property: Any) -> None:
    """Run All, then Run, Crash now in the middle, Resume: the page shows progress stop, then finish, exactly once."""
    try:
        _story(jupyterlab, page, screenshot_path, record_property)
    except BaseException:
        failure = screenshot_path.with_name("teacher_demo_failure.png")
        page.screenshot(path=str(failure), full_page=True)
        print(f"failure screenshot: {failure}\nJupyterLab log: {jupyterlab.log}")
        raise


def _story(jupyterlab: Lab, page: Any, screenshot_path: Path, record_property: Any) -> None:
    page.goto(jupyterlab.notebook_url(NOTEBOOK))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    jupyterlab.wait_for_idle_kernel()
    run_all_cells(page)
    # The last cell closes the scripted demo; its output says no worker is left.
    page.wait_for_selector(".jp-OutputArea-output:has-text('worker running: False')", timeout=90_000)
    page.wait_for_selector(".batchlab-dashboard .bl-status[data-phase='idle']")
    scripted = page.locator(".jp-OutputArea-output:has-text('thresholds met:')").inner_text()
    assert "pass 1: killed | pass 2: finished | duplicates: 0 | unfinished: 0 | thresholds met: True" in scripted

    dashboard = page.locator(".batchlab-dashboard")
    dashboard.scroll_into_view_if_needed()
    page.click(".batchlab-dashboard .bl-run")
    _wait_for(page, f"{PHASE} === 'running' && {FINISHED} > 0")
    first = _read(page)
    # More than the first reading, whatever its size: one refresh of the page can jump past 30 % at once.
    _wait_for(page, f"{FINISHED} >= Math.max(0.3 * {TOTAL}, {first['finished']} + 1)")
    growing = _read(page)
    assert growing["finished"] > first["finished"]
    worker_pid, kernel_pid = growing["pid"], growing["kernel_pid"]
    assert worker_pid and kernel_pid and worker_pid != kernel_pid and pid_alive(worker_pid)

    page.click(".batchlab-dashboard .bl-crash")
    _wait_for(page, f"{PHASE} === 'killed' && {VERDICTS} > 0")
    killed = _read(page)
    assert 0 < killed["finished"] < killed["total"]
    assert killed["tiles"]["pending"] + killed["tiles"]["processing"] > 0
    assert killed["verdicts"][0] == "False"  # completion rate below 99 % after the kill: red
    assert not pid_alive(worker_pid) and pid_alive(kernel_pid)  # the worker got the SIGKILL, not the kernel
    page.wait_for_timeout(1000)
    assert _read(page)["tiles"] == killed["tiles"]  # nothing moves while no worker runs
    dashboard.screenshot(path=str(screenshot_path.with_name("teacher_demo_killed.png")))

    page.click(".batchlab-dashboard .bl-resume")
    _wait_for(page, f"{PHASE} === 'finished' && {FINISHED} === {TOTAL} && {GREEN} === 4", timeout_ms=90_000)
    done = _read(page)
    assert done["finished"] == done["total"] == killed["total"]
    assert done["tiles"]["pending"] == done["tiles"]["processing"] == 0
    assert done["tiles"]["done"] > killed["tiles"]["done"]
    assert done["tiles"]["duplicates"] == 0
    assert [v for v in done["verdicts"] if v != "None"] == ["True"] * 4  # each threshold, green
    assert page.locator(".batchlab-dashboard .bl-marker[data-kind='crash']").count() == 1
    assert page.locator(".batchlab-dashboard .bl-marker[data-kind='resume']").count() == 1

    dashboard.screenshot(path=str(screenshot_path))
    record_property("screenshot", str(screenshot_path))
    print(f"dashboard screenshot: {screenshot_path}")
    assert screenshot_path.stat().st_size > 10_000
