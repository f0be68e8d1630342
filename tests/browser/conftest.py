"""Shared by the real-browser tests: the environment Debian's Chromium is started with."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from batchlab.paths import kit_root

#: Debian's Chromium (Playwright's own browser download is never used).
CHROMIUM = Path(os.environ.get("BATCHLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> Any:
    """At a browser test module's top: skip it, saying why, without Chromium or Playwright; else Playwright's
    sync API."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run installs it)",
                    allow_module_level=True)
    return pytest.importorskip(
        "playwright.sync_api", reason='Playwright is not installed (pip install -e ".[browser]"; .ci/run installs it)')


@contextmanager
def chromium_page(folder: Path, *, viewport: dict[str, int], timeout_ms: int) -> Iterator[Any]:
    """A page of a headless Chromium started for it (fonts from :func:`chromium_env`), closed afterwards."""
    sync_api = require_browser()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
                                     env=chromium_env(folder))
        try:
            page = browser.new_context(viewport=viewport).new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def artifact_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``$BATCHLAB_ARTIFACT_DIR`` (CI keeps them under reports/) or the test's folder."""
    folder = Path(os.environ.get("BATCHLAB_ARTIFACT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_env(folder: Path) -> dict[str, str]:
    """The test's environment plus a fontconfig file that adds the kit's bundled CJK font (Noto Sans CJK SC, from
    the ``mpl-font`` dependency) to the system fonts, so the screenshots show the pages' Chinese labels on a
    machine without a CJK system font (CI's), as teachers' and students' machines do, instead of boxes."""
    from batchlab.teach.report.style import bundled_cjk_fonts

    dirs = sorted({str(f.parent) for f in bundled_cjk_fonts()})
    conf = folder / "fonts.conf"
    conf.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
                    '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n'
                    + "".join(f"  <dir>{escape(d)}</dir>\n" for d in dirs)
                    + f"  <cachedir>{escape(str(folder / 'fontconfig-cache'))}</cachedir>\n</fontconfig>\n",
                    encoding="utf-8")
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}


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
        last_error = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/kernels?token={self.token}", timeout=5) as resp:
                    kernels = json.load(resp)
            except urllib.error.HTTPError as exc:
                # Asked while the kernel is starting, jupyter_server's listing can fail with a 500 (the kernel's
                # `last_activity` not set yet: seen once on a loaded machine; the same race is reported as
                # jupyter-server/enterprise_gateway#1395); the next answer is good.
                if exc.code < 500:
                    raise
                last_error, kernels = f" (last answer: HTTP {exc.code}, {self.log})", []
            if kernels and all(k.get("execution_state") == "idle" for k in kernels):
                return
            time.sleep(0.25)
        pytest.fail(f"the notebook's kernel was not idle within {timeout_s:g} s{last_error}")


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


@contextmanager
def running_lab(tmp_path: Path, notebooks: list[str], env_extra: dict[str, str] | None = None) -> Iterator[Lab]:
    """JupyterLab serving copies of the kit's ``notebooks`` on a random loopback port, with a token (and
    ``env_extra`` in its kernels' environment); shut down afterwards, its kernels with it."""
    root = tmp_path / "lab"
    root.mkdir()
    for name in notebooks:
        shutil.copy(kit_root() / "notebooks" / name, root / name)
    jupyter_home = tmp_path / "jupyter"
    _write_settings(jupyter_home / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(jupyter_home / "config"),
           "JUPYTER_RUNTIME_DIR": str(jupyter_home / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(jupyter_home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(jupyter_home / "workspaces"), "PYTHONUNBUFFERED": "1",
           **(env_extra or {})}
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


def run_all_cells(page: Any) -> None:
    """Run > Run All Cells, from the menu, as a teacher would (again if the first click found it not ready)."""
    first_prompt = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").first
    for _ in range(5):
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click(".lm-Menu-item:has-text('Run All Cells')")
        try:
            page.wait_for_function("(el) => !el.textContent.includes('[ ]')", arg=first_prompt.element_handle(),
                                   timeout=5_000)
            return
        except require_browser().TimeoutError:
            page.keyboard.press("Escape")
    pytest.fail("Run All Cells did not start the notebook")
