"""Shared by the real-browser tests: the environment Debian's Chromium is started with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest

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
