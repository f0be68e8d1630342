"""The service's task page in a real browser: ``batchlab serve`` on loopback, headless Chromium via Playwright.

What a user of the service does on the page, end to end: upload a bad file
(the unified error's message and hints appear), upload a batch, watch its
progress bar move on the list, open it, press Cancel (cancelled), Resume, kill
its worker with a real SIGKILL (interrupted), Resume again, let it finish with
some documents failed (metrics red), press Retry failed (metrics green), and
read the counts and the completion curve with the stop, the kill and each
resume marked. Screenshots go to ``$BATCHLAB_ARTIFACT_DIR`` when set, else to
the test's temporary folder.

The server runs an implementation that wraps the reference and fails every
document whose id ends in 7 until the test "heals" the service (a flag file
in the test's folder), so failed documents exist until Retry failed. Skipped,
with the reason, where Debian's ``chromium`` or ``playwright`` is missing.
Every wait is for what the page shows, bounded by a generous timeout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from batchlab.examples import make_documents
from batchlab.paths import solution_module

from .conftest import artifact_dir, chromium_page, require_browser

sync_api = require_browser()
pytest.importorskip("fastapi")
if not solution_module().exists():
    pytest.skip("the reference solution is absent", allow_module_level=True)

pytestmark = pytest.mark.slow
expect = sync_api.expect

#: Generous bound of every wait (a loaded 2-core machine).
WAIT_MS = 90_000
DOCS = 120

#: Fails the documents whose id ends in 7 (an unexpected exception: they end `failed`) until ``healed`` exists.
FLAKY_IMPL = '''
import importlib.util, sys
from pathlib import Path
_spec = importlib.util.spec_from_file_location("reference_for_task_page", {ref!r})
ref = importlib.util.module_from_spec(_spec)
sys.modules["reference_for_task_page"] = ref
_spec.loader.exec_module(ref)
HEALED = Path({healed!r})


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, **kw):
    class Flaky:
        def __getattr__(self, name):
            return getattr(service, name)

        async def embed(self, doc, chunk, text):
            if not HEALED.exists() and str(doc.id).endswith("7"):
                raise RuntimeError("flaky until healed")
            return await service.embed(doc, chunk, text)

    return await ref.process_documents_batch(documents, batch_id=batch_id, service=Flaky(), sink=sink,
                                             state_dir=state_dir, config=config, **kw)
'''


@dataclass
class Service:
    url: str
    log: Path
    healed: Path


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """``batchlab serve --port 0`` in its own process group over a temporary data folder (killed at the end)."""
    healed = tmp_path / "healed"
    impl = tmp_path / "flaky.py"
    impl.write_text(FLAKY_IMPL.format(ref=str(solution_module()), healed=str(healed)), encoding="utf-8")
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "batchlab", "serve", "--port", "0", "--data",
                                 str(tmp_path / "service"), "--impl", str(impl)],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], WAIT_MS / 1000)
        line = proc.stdout.readline().decode() if ready else ""
        assert "http://" in line, f"no URL printed: {line!r} (log: {log.read_text()[-2000:]})"
        yield Service(url="http://" + line.split("http://", 1)[1].split("/", 1)[0], log=log, healed=healed)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the server and any worker it started
        except ProcessLookupError:
            pass
        proc.wait(30)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return artifact_dir(tmp_path)


@pytest.fixture
def page(service: Service, tmp_path: Path) -> Iterator[Any]:
    with chromium_page(tmp_path, viewport={"width": 1400, "height": 1800}, timeout_ms=WAIT_MS) as tab:
        expect.set_options(timeout=WAIT_MS)
        yield tab


def _batch_file(tmp_path: Path) -> Path:
    docs = make_documents(DOCS, seed=11, min_bytes=200, max_bytes=800, duplicates=0, invalid=1, empty=0)
    path = tmp_path / "lesson-batch.json"
    path.write_text(json.dumps({"batch_id": "lesson-batch", "documents": docs}, ensure_ascii=False), encoding="utf-8")
    return path


def _progress(page: Any) -> tuple[int, int]:
    done, unique = page.locator("#progress").inner_text().split("/")
    return int(done), int(unique)


def _counts(page: Any) -> dict[str, int]:
    return page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('#counts tr')).map(
        r => [r.cells[0].textContent.split(' ').pop(), Number(r.cells[1].textContent)]))""")


def _verdicts(page: Any) -> list[str]:
    return page.locator("#metrics td:last-child").all_inner_texts()


def _worker_pid(url: str, batch_id: str) -> int | None:
    import httpx

    return httpx.get(f"{url}/batches/{batch_id}", timeout=30).json().get("worker_pid")


def test_a_user_uploads_cancels_resumes_survives_a_kill_and_retries_the_failed_on_the_task_page(
        service: Service, page: Any, artifacts: Path, tmp_path: Path, record_property: Any) -> None:
    """Bad file -> error and hints; batch -> moving bar, cancel, resume, kill, resume, red metrics, retry -> green."""
    try:
        _story(service, page, artifacts, tmp_path)
        record_property("screenshots", str(artifacts))
    except BaseException:
        page.screenshot(path=str(artifacts / "task_page_failure.png"), full_page=True)
        print(f"failure screenshot: {artifacts / 'task_page_failure.png'}\nserver log: {service.log}")
        raise


def _story(service: Service, page: Any, artifacts: Path, tmp_path: Path) -> None:
    page.goto(service.url + "/")
    expect(page.locator("h1")).to_contain_text("批处理任务 (batches)")

    # A bad file: the unified error's code, message and hints appear on the page; nothing is created.
    bad = tmp_path / "broken.json"
    bad.write_text('{"batch_id": "x", "documents": [', encoding="utf-8")
    page.set_input_files("#upload input[type=file]", str(bad))
    page.click("#upload button[type=submit]")
    error = page.locator("#upload-error .error")
    expect(error).to_be_visible()
    expect(error.locator("li").first).to_be_visible()  # at least one hint
    assert error.inner_text().split(":", 1)[1].strip(), "the error shows a message"
    page.screenshot(path=str(artifacts / "task_page_bad_upload.png"), full_page=True)
    assert page.locator("#rows tr").count() == 0

    # A good batch: it is listed and its bar moves.
    page.fill("#upload input[name=fault_rate]", "0.03")
    page.fill("#upload input[name=concurrency]", "2")
    page.fill("#upload input[name=latency_ms]", "60")
    page.set_input_files("#upload input[type=file]", str(_batch_file(tmp_path)))
    page.click("#upload button[type=submit]")
    expect(page.locator("#upload-error .error")).to_have_count(0)
    row = page.locator("#rows tr").first
    expect(row).to_contain_text("lesson-batch")
    width = "Number(document.querySelector('#rows tr .bar i')?.style.width.replace('%','') || 0)"
    page.wait_for_function(f"{width} > 0", polling=100)
    first = page.evaluate(width)
    page.wait_for_function(f"{width} > {first}", polling=100)
    page.screenshot(path=str(artifacts / "task_page_list.png"), full_page=True)

    # Its page: progress grows; Cancel stops it, resumable.
    row.locator("a").click()
    expect(page.locator("#state")).to_have_text("运行中 running")
    batch_id = page.url.rsplit("/", 1)[1]
    page.wait_for_function("Number(document.getElementById('progress').textContent.split('/')[0]) > 5", polling=100)
    page.click("button[data-action=cancel]")
    expect(page.locator("#state")).to_have_text("已取消 cancelled")
    cancelled, unique = _progress(page)
    assert 0 < cancelled < unique
    expect(page.locator("#curve line[data-kind=stop]")).to_have_count(1)

    # Resume; then a real SIGKILL of the worker: interrupted, the kill marked on the curve.
    page.click("button[data-action=resume]")
    expect(page.locator("#state")).to_have_text("运行中 running")
    page.wait_for_function(f"Number(document.getElementById('progress').textContent.split('/')[0]) > {cancelled}",
                           polling=100)
    deadline = time.monotonic() + WAIT_MS / 1000
    while (pid := _worker_pid(service.url, batch_id)) is None:  # the pass's first ledger event names its pid
        assert time.monotonic() < deadline, "the resumed pass never reported its worker's pid"
        page.wait_for_timeout(100)
    os.kill(pid, signal.SIGKILL)
    expect(page.locator("#state")).to_have_text("中断 interrupted")
    expect(page.locator("#reason")).to_contain_text("killed")
    expect(page.locator("#curve line[data-kind=kill]")).to_have_count(1)
    killed, _ = _progress(page)
    assert killed < unique
    page.screenshot(path=str(artifacts / "task_page_killed.png"), full_page=True)

    # Resume to the end: the flaky documents failed, the metrics are red, the failure reasons listed.
    page.click("button[data-action=resume]")
    expect(page.locator("#state")).to_have_text("完成 completed")
    counts = _counts(page)
    expected_failed = sum(1 for d in json.loads((tmp_path / "lesson-batch.json").read_text())["documents"]
                          if str(d.get("id", "")).strip().endswith("7"))
    assert counts["failed"] >= 1 and counts["rejected"] == 1, counts
    assert counts["pending"] == counts["processing"] == 0
    expect(page.locator("#metrics td.fail").first).to_be_visible()
    assert "未达标 FAIL" in _verdicts(page)
    expect(page.locator("#reasons")).to_contain_text("RuntimeError")
    expect(page.locator("#curve line[data-kind=resume]")).to_have_count(2)
    page.screenshot(path=str(artifacts / "task_page_failed_docs.png"), full_page=True)

    # Retry failed with the service healed: every valid document done, the rejected one stays, all green.
    service.healed.touch()
    page.click("button[data-action=retry-failed]")
    page.wait_for_function("""() => document.getElementById('state').textContent === '完成 completed'
        && document.querySelectorAll('#counts tr').length > 0
        && Array.from(document.querySelectorAll('#counts tr')).some(r => r.cells[0].textContent.endsWith('failed')
           && r.cells[1].textContent === '0')""", polling=100)
    final = _counts(page)
    done, unique = _progress(page)
    assert final["failed"] == 0 and final["rejected"] == 1 and done == unique, final
    assert final["done"] + final["degraded"] == unique
    assert final["done"] + final["degraded"] >= counts["done"] + counts["degraded"] + counts["failed"]
    expect(page.locator("#metrics td.fail")).to_have_count(0)
    verdicts = [v for v in _verdicts(page) if v != "未测 (not measured)"]
    assert verdicts and set(verdicts) == {"达标 PASS"}, verdicts
    expect(page.locator("#curve line[data-kind=resume]")).to_have_count(3)
    assert float(page.evaluate("document.getElementById('curve-line').getAttribute('points').split(' ').length")) > 3
    page.screenshot(path=str(artifacts / "task_page_done.png"), full_page=True)
    print(f"screenshots in {artifacts}; {expected_failed} flaky document ids in the input")
