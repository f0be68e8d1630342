"""The task page: server-rendered HTML over the same API (the real-browser test: tests/browser/test_task_page.py)."""

from __future__ import annotations

from .conftest import batch_bytes, wait_state


def test_the_index_lists_the_batches_with_progress_and_has_the_upload_form(client):
    batch = client.post("/batches", content=batch_bytes(5), headers={"content-type": "application/json"}).json()
    wait_state(client, batch["id"], "completed")
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"/view/{batch['id']}" in page.text and "完成 completed" in page.text and "5/5" in page.text
    assert 'type="file"' in page.text and "上传批次文件 (upload a batch file)" in page.text


def test_a_batch_page_has_its_data_the_three_buttons_and_listens_on_the_websocket(client):
    batch = client.post("/batches", content=batch_bytes(5), headers={"content-type": "application/json"}).json()
    wait_state(client, batch["id"], "completed")
    page = client.get(f"/view/{batch['id']}").text
    labels = ("恢复 (Resume)", "重试失败 (Retry failed)", "取消 (Cancel)", "指标 (metrics)", "资源 (resources)")
    for label in labels:
        assert label in page
    assert "/batches/${ID}/events" in page and batch["id"] in page


def test_a_page_for_an_unknown_batch_answers_404_with_the_unified_error(client):
    assert client.get("/view/b-nope").json()["error"]["code"] == "batch_not_found"


def test_a_batch_page_draws_the_completion_curve_with_kills_stops_and_resumes_marked(client):
    batch = client.post("/batches", content=batch_bytes(5), headers={"content-type": "application/json"}).json()
    wait_state(client, batch["id"], "completed")
    page = client.get(f"/view/{batch['id']}").text
    assert '<svg id="curve"' in page and "完成曲线 (completion curve)" in page
    assert "'kill':'stop'" in page and "'resume'" in page  # a pass's end and a later pass's start become marks
