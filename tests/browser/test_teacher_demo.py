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

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from batchlab.host import pid_alive
from batchlab.paths import kit_root

from .conftest import artifact_dir, chromium_page, require_browser

NOTEBOOK = "teacher_demo.ipynb"

sync_api = require_browser()

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    """A running JupyterLab server: where to open the notebook."""

    url: str
    token: str
    root: Path
    log: Path

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def wait_for_idle_kernel(self, timeout_s: float = 90.0) -> None:
        """Wait until the notebook's kernel has started and is idle (asked of the server, not the page)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{self.url}/api/kernels?token={self.token}", timeout=5) as resp:
                kernels = json.load(resp)
            if kernels and all(k.get("execution_state") == "idle" for k in kernels):
                return
            time.sleep(0.25)
        pytest.fail(f"the notebook's kernel was not idle within {timeout_s:g} s")


def _write_settings(settings_dir: Path) -> None:
    """User settings for a test session: no news toast or update check (nothing leaves the machine),
    the notebook's kernel starts without asking, and every cell stays in the page (no windowing)."""
    for plugin, values in {
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "notebook-extension/tracker": {"autoStartDefaultKernel": True, "windowingMode": "none"},
    }.items():
        target = settings_dir / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab serving a copy of the teacher notebook on a random loopback port, with a token."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(kit_root() / "notebooks" / NOTEBOOK, root / NOTEBOOK)
    jupyter_home = tmp_path / "jupyter"
    _write_settings(jupyter_home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jupyter_home / "config"),
           "JUPYTER_RUNTIME_DIR": str(jupyter_home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(jupyter_home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jupyter_home / "workspaces"), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with log.open("wb") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in 60 s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.25)
        yield Lab(url=url, token=token, root=root, log=log)
    finally:
        server.terminate()  # the server shuts its kernels down; a kernel's exit kills any dashboard worker
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


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


def _run_all_cells(page: Any) -> None:
    """Run > Run All Cells, from the menu, as a teacher would (again if the first click found it not ready)."""
    first_prompt = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").first
    for _ in range(5):
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu-item:has-text('Run All Cells')")
        try:
            page.wait_for_function("(el) => !el.textContent.includes('[ ]')", arg=first_prompt.element_handle(),
                                   timeout=5_000)
            return
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    pytest.fail("Run All Cells did not start the notebook")


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
    _run_all_cells(page)
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
    _wait_for(page, f"{FINISHED} >= 0.3 * {TOTAL}")
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
