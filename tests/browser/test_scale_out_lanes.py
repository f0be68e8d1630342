"""Notebook 08's worker lanes in a real browser: JupyterLab on loopback, headless Chromium, a real fleet, a real SIGKILL.

What a teacher shows in the optional extension segment: open ``08_scale_out.ipynb``, run all cells; the lanes
(``teach/dashboard/fleetview.py``) refresh in the page while three worker processes share the batch and one of
them is SIGKILLed in the middle. The test reads the lanes the page shows (the ``data-*`` attributes of each row)
and checks them against what the notebook's own audit printed. The notebook runs against the reference
(``BATCHLAB_IMPL``) with PostgreSQL's section skipped (``BATCHLAB_PG_BIN`` set to an empty folder), so it is the
lanes, not a server, that this test waits for. Skipped, with the reason, without Chromium or Playwright.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlab.paths import solution_module

from .conftest import Lab, artifact_dir, chromium_page, require_browser, run_all_cells, running_lab

NOTEBOOK = "08_scale_out.ipynb"

require_browser()

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab serving a copy of notebook 08, its kernels on the reference and without PostgreSQL."""
    no_postgres = tmp_path / "no-postgres"
    no_postgres.mkdir()
    env = {"BATCHLAB_IMPL": str(solution_module()), "BATCHLAB_PG_BIN": str(no_postgres)}
    with running_lab(tmp_path, [NOTEBOOK], env) as running:
        yield running


@pytest.fixture
def page(lab: Lab, tmp_path: Path) -> Iterator[Any]:
    with chromium_page(tmp_path, viewport={"width": 1280, "height": 2000}, timeout_ms=60_000) as tab:
        yield tab


#: The rows of the first lanes table in the page (the SIGKILL section's), as the widget renders them.
LANES = """() => {
    const table = document.querySelector('table.bl-lanes');
    if (!table) return [];
    return Array.from(table.querySelectorAll('tr.bl-lane')).map(r => ({
        owner: r.dataset.owner, state: r.dataset.state, killed: r.dataset.killed === 'true',
        commits: Number(r.dataset.commits), took: Number(r.dataset.took), lost: Number(r.dataset.lost)}));
}"""


def test_the_lanes_show_three_workers_one_sigkilled_and_every_commit(lab: Lab, page: Any, tmp_path: Path,
                                                                      record_property: Any) -> None:
    """Run All on notebook 08: the page's lanes show one row per worker, one of them killed, commits = the audit's."""
    shot = artifact_dir(tmp_path) / "scale_out_lanes.png"
    try:
        page.goto(lab.notebook_url(NOTEBOOK))
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        lab.wait_for_idle_kernel()
        run_all_cells(page)
        page.wait_for_function(f"({LANES})().length >= 3", timeout=120_000, polling=100)
        running = page.evaluate(LANES)
        audit = page.locator(".jp-OutputArea-output:has-text('audit:')").first
        audit.wait_for(timeout=180_000)
        text = audit.inner_text()
        found = re.search(r"(\d+)/(\d+) committed, (\d+) duplicate puts, (\d+) stale-token commits", text)
        assert found, text
        committed, unique, duplicates, stale = (int(g) for g in found.groups())
        final = f"({LANES})().reduce((n, l) => n + l.commits, 0) === {committed + duplicates}"
        page.wait_for_function(f"{final} && ({LANES})().every(l => l.state === 'exited')", timeout=30_000,
                               polling=100)
        lanes = page.evaluate(LANES)
    except BaseException:
        page.screenshot(path=str(shot.with_name("scale_out_lanes_failure.png")), full_page=True)
        print(f"JupyterLab log: {lab.log}\nlanes in the page: {page.evaluate(LANES)}")
        raise
    assert committed == unique and stale == 0, text
    assert {"w1", "w2", "w3"} <= {lane["owner"] for lane in running}, running
    killed = [lane for lane in lanes if lane["killed"]]
    assert len(killed) == 1, lanes
    assert sum(lane["commits"] for lane in lanes) == committed + duplicates, (lanes, text)
    # the killed worker's shard was taken over by another lane, unless it had just finished that shard
    assert sum(lane["took"] for lane in lanes) >= 1 or "nothing to take over" in text, (lanes, text)
    page.locator("table.bl-lanes").first.screenshot(path=str(shot))
    record_property("screenshot", str(shot))
