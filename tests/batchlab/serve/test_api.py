"""The HTTP API through FastAPI's test client: every endpoint, every error path, on a real worker per batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from batchlab.documents import MAX_DOCUMENT_BYTES
from batchlab.metrics import metrics_for_run
from batchlab.paths import solution_module
from batchlab.serve import views
from batchlab.serve.manager import BatchManager

from .conftest import batch_bytes, wait_state

JSON = {"content-type": "application/json"}

#: An implementation that fails documents whose id ends in 7 on its first pass (the reference otherwise).
FLAKY_IMPL = '''
import importlib.util, sys
from pathlib import Path
_spec = importlib.util.spec_from_file_location("reference_for_flaky", {ref!r})
ref = importlib.util.module_from_spec(_spec)
sys.modules["reference_for_flaky"] = ref
_spec.loader.exec_module(ref)


async def process_documents_batch(documents, *, batch_id, service, sink, state_dir, config, progress=None, **kw):
    flag = Path(state_dir) / "first-pass-done"
    first = not flag.exists()

    class Flaky:
        def __getattr__(self, name):
            return getattr(service, name)

        async def embed(self, doc, chunk, text):
            if first and str(doc.id).endswith("7"):
                raise RuntimeError("flaky on the first pass")
            return await service.embed(doc, chunk, text)

    try:
        return await ref.process_documents_batch(documents, batch_id=batch_id, service=Flaky(), sink=sink,
                                                 state_dir=state_dir, config=config, progress=progress, **kw)
    finally:
        flag.touch()
'''


def created(client, body: bytes = b"", **params) -> dict:
    response = client.post("/batches", content=body or batch_bytes(), headers=JSON, params=params)
    assert response.status_code == 201, response.text
    return response.json()


def assert_unified(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details", "hints"}
    assert error["code"] == code and error["message"] and error["hints"]
    return error


class TestSubmit:
    def test_a_json_batch_runs_in_a_worker_to_completed_with_the_thresholds_met(self, client):
        batch = created(client, batch_bytes(40, invalid=1))
        assert batch["state"] in ("queued", "running") and batch["name"] == "batch-t"
        done = wait_state(client, batch["id"], "completed", "failed", "interrupted")
        assert done["state"] == "completed", done["reason"]
        assert done["counts"]["rejected"] == 1 and done["counts"]["done"] == done["unique"] == 39
        assert done["metrics"]["meets_thresholds"] and done["metrics"]["summary"]["duplicate_rate"] == 0
        assert {r["reason"] for r in done["failure_reasons"] if r["kind"] == "rejected"} and all(
            r["hint"] for r in done["failure_reasons"])
        assert done["timings"]["passes"][0]["outcome"] == "ok"

    def test_an_uploaded_file_with_form_settings_is_accepted(self, client):
        response = client.post("/batches", files={"file": ("mine.json", batch_bytes(8), "application/json")},
                               data={"concurrency": "2", "seed": "7", "fault_rate": "0.05"})
        assert response.status_code == 201, response.text
        assert response.json()["settings"] | {} == {**response.json()["settings"], "concurrency": 2, "seed": 7,
                                                    "fault_rate": 0.05}
        assert wait_state(client, response.json()["id"], "completed", "failed")["state"] == "completed"

    def test_bad_json_answers_400_with_the_cli_validation_and_creates_nothing(self, client, data_dir):
        error = assert_unified(client.post("/batches", content=b'{"documents": [', headers=JSON), 400,
                               "invalid_json")
        assert error["details"]["path"] == "request body" and error["details"]["request_id"]
        assert client.get("/batches").json()["total"] == 0
        assert not list((data_dir / "batches").iterdir()) and not list((data_dir / ".incoming").iterdir())

    def test_an_empty_batch_and_a_form_without_file_answer_400(self, client):
        assert_unified(client.post("/batches", content=b'{"documents": []}', headers=JSON), 400, "empty_batch")
        assert_unified(client.post("/batches", data={"seed": "1"}, files={"other": ("x", b"1")}), 400,
                       "missing_file")

    def test_a_bad_setting_answers_400_naming_it(self, client):
        error = assert_unified(client.post("/batches", content=batch_bytes(3), headers=JSON,
                                           params={"fault_rate": "2"}), 400, "invalid_setting")
        assert error["details"]["setting"] == "fault_rate"
        assert_unified(client.post("/batches", content=batch_bytes(3), headers=JSON, params={"crash": "boom"}),
                       400, "invalid_setting")
        assert_unified(client.post("/batches", content=batch_bytes(3), headers=JSON, params={"colour": "red"}),
                       400, "unknown_setting")
        assert client.get("/batches").json()["total"] == 0

    def test_a_document_over_the_size_limit_answers_413_and_creates_nothing(self, client, data_dir):
        big = json.dumps({"documents": [{"id": "big", "content": "x" * (MAX_DOCUMENT_BYTES + 1)}]}).encode()
        error = assert_unified(client.post("/batches", content=big, headers=JSON), 413, "document_too_large")
        assert error["details"]["documents"][0]["id"] == "big"
        assert not list((data_dir / "batches").iterdir())

    def test_a_declared_body_over_the_upload_limit_answers_413_before_it_is_read(self, client):
        assert_unified(client.post("/batches", content=b"{}", headers={**JSON, "content-length": str(10**10)}),
                       413, "request_too_large")


class TestReadAndActions:
    def test_the_list_is_newest_first_and_paginated(self, client):
        ids = [created(client, batch_bytes(3, seed=s))["id"] for s in range(3)]
        page = client.get("/batches", params={"limit": 2}).json()
        assert [b["id"] for b in page["batches"]] == ids[::-1][:2]
        assert page["total"] == 3 and page["next_offset"] == 2
        rest = client.get("/batches", params={"limit": 2, "offset": 2}).json()
        assert [b["id"] for b in rest["batches"]] == ids[:1] and rest["next_offset"] is None
        for i in ids:
            wait_state(client, i, "completed")

    def test_a_crash_interrupts_the_batch_and_resume_completes_it_without_duplicates(self, client, manager):
        batch = created(client, batch_bytes(20), crash="during_call", at="5")
        killed = wait_state(client, batch["id"], "interrupted", "completed", "failed")
        assert killed["state"] == "interrupted" and "killed" in killed["reason"]
        assert_unified(client.post(f"/batches/{batch['id']}/cancel"), 409, "state_conflict")
        assert client.post(f"/batches/{batch['id']}/resume").status_code == 202
        done = wait_state(client, batch["id"], "completed", "failed", "interrupted")
        assert done["state"] == "completed" and [p["outcome"] for p in done["timings"]["passes"]] == ["killed", "ok"]
        metrics = metrics_for_run(manager.store.run_dir(batch["id"]))
        assert metrics.duplicates == [] and metrics.completion_rate == 1.0

    def test_cancel_stops_the_worker_and_resume_finishes_the_rest(self, client, manager):
        batch = created(client, batch_bytes(30), latency_ms="60", concurrency="1")
        wait_state(client, batch["id"], "running")
        response = client.post(f"/batches/{batch['id']}/cancel")
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
        assert response.json()["counts"]["done"] < 30
        assert_unified(client.post(f"/batches/{batch['id']}/retry-failed"), 409, "state_conflict")
        client.post(f"/batches/{batch['id']}/resume")
        done = wait_state(client, batch["id"], "completed", "failed", "interrupted")
        assert done["state"] == "completed" and done["counts"]["done"] == 30
        assert metrics_for_run(manager.store.run_dir(batch["id"])).duplicates == []

    def test_retry_failed_gives_failed_documents_another_pass_and_rejected_ones_stay_rejected(self, data_dir,
                                                                                            tmp_path):
        from batchlab.serve.app import create_app

        from .conftest import TestClient

        impl = tmp_path / "flaky.py"
        impl.write_text(FLAKY_IMPL.format(ref=str(solution_module())), encoding="utf-8")
        manager = BatchManager(data_dir, impl=impl)
        with TestClient(create_app(manager)) as client:
            batch = created(client, batch_bytes(20, invalid=1))
            first = wait_state(client, batch["id"], "completed", "failed")
            assert first["state"] == "completed" and first["counts"]["failed"] >= 1, first
            failed = client.get(f"/batches/{batch['id']}/documents", params={"state": "failed"}).json()
            assert failed["total"] == first["counts"]["failed"]
            assert all(d["doc_id"].endswith("7") and d["attempts"] >= 1 and "RuntimeError" in d["last_error"]
                       for d in failed["documents"])
            assert client.post(f"/batches/{batch['id']}/retry-failed").status_code == 202
            second = wait_state(client, batch["id"], "completed", "failed")
            assert second["counts"]["failed"] == 0 and second["counts"]["rejected"] == 1
            assert second["counts"]["done"] == second["unique"]
            rejected = client.get(f"/batches/{batch['id']}/documents", params={"state": "rejected"}).json()
            assert rejected["total"] == 1 and rejected["documents"][0]["reason"]
            assert_unified(client.post(f"/batches/{batch['id']}/retry-failed"), 409, "state_conflict")

    def test_beyond_max_running_a_batch_waits_queued_and_a_queued_one_can_be_cancelled(self, data_dir):
        from batchlab.serve.app import create_app

        from .conftest import TestClient

        manager = BatchManager(data_dir, max_running=1)
        with TestClient(create_app(manager)) as client:
            slow = created(client, batch_bytes(20), latency_ms="40", concurrency="1")
            waiting, cancelled = created(client, batch_bytes(3, seed=8)), created(client, batch_bytes(3, seed=9))
            assert waiting["state"] == "queued" and cancelled["state"] == "queued"
            assert client.post(f"/batches/{cancelled['id']}/cancel").json()["state"] == "cancelled"
            wait_state(client, slow["id"], "completed")
            assert wait_state(client, waiting["id"], "completed")["state"] == "completed"
            assert client.get(f"/batches/{cancelled['id']}").json()["passes"] == 0

    def test_actions_that_do_not_fit_the_state_answer_409(self, client):
        batch = created(client, batch_bytes(3))
        wait_state(client, batch["id"], "completed")
        for action in ("resume", "cancel", "retry-failed"):
            error = assert_unified(client.post(f"/batches/{batch['id']}/{action}"), 409, "state_conflict")
            assert error["details"]["state"] == "completed"

    @pytest.mark.parametrize("method,path", [("get", ""), ("get", "/documents"), ("post", "/resume"),
                                             ("post", "/cancel"), ("post", "/retry-failed")])
    def test_an_unknown_batch_answers_404(self, client, method, path):
        assert_unified(getattr(client, method)(f"/batches/b-nope{path}"), 404, "batch_not_found")

    def test_an_unknown_route_and_a_bad_query_answer_with_the_unified_error(self, client):
        assert_unified(client.get("/nowhere"), 404, "not_found")
        assert_unified(client.get("/batches", params={"limit": "0"}), 400, "invalid_request")

    def test_an_unexpected_error_answers_500_with_a_request_id_never_a_traceback(self, client, monkeypatch):
        def broken(*_a, **_k):
            raise RuntimeError("a bug")

        monkeypatch.setattr(views, "detail", broken)
        response = client.get("/batches/b-any", headers={"X-Request-ID": "req-42"})
        error = assert_unified(response, 500, "internal_error")
        assert error["details"]["request_id"] == "req-42" and response.headers["X-Request-ID"] == "req-42"
        assert "Traceback" not in response.text and "a bug" not in response.text


class TestRestartAndEvents:
    def test_a_restarted_manager_finds_every_batch_and_a_running_one_is_interrupted(self, data_dir: Path):
        first = BatchManager(data_dir)  # never started: its batch stays queued
        rec = first.create(batch_bytes(5))
        rec.state = "running"  # as if the server died while the batch ran
        first.store.save(rec)
        again = BatchManager(data_dir)
        found = again.record(rec.id)
        assert found.state == "interrupted" and "server stopped" in (found.reason or "")
        assert json.loads((data_dir / "index.json").read_text())["batches"][0]["id"] == rec.id

    def test_a_restarted_manager_drops_an_upload_a_killed_server_was_validating(self, data_dir: Path):
        BatchManager(data_dir)
        (data_dir / ".incoming" / "b-half.json").write_bytes(b'{"documents": [')
        again = BatchManager(data_dir)
        assert not list((data_dir / ".incoming").iterdir()) and again.records() == []

    def test_a_websocket_client_gets_a_snapshot_then_progress_and_closes_with_the_final_metrics(self, client):
        batch = created(client, batch_bytes(20))
        with client.websocket_connect(f"/batches/{batch['id']}/events") as ws:
            messages = [ws.receive_json()]
            while messages[-1]["type"] != "final":
                messages.append(ws.receive_json())
        assert messages[0]["type"] == "snapshot"
        assert any(m["type"] == "progress" for m in messages)
        assert messages[-1]["metrics"]["meets_thresholds"] and messages[-1]["batch"]["state"] == "completed"
        with client.websocket_connect(f"/batches/{batch['id']}/events") as late:  # a late client
            assert late.receive_json()["batch"]["state"] == "completed"
            assert late.receive_json()["type"] in ("progress", "event", "final")

    def test_a_websocket_for_an_unknown_batch_sends_the_unified_error(self, client):
        with client.websocket_connect("/batches/b-nope/events") as ws:
            assert ws.receive_json()["error"]["code"] == "batch_not_found"


def test_the_openapi_page_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/batches", "/batches/{batch_id}", "/batches/{batch_id}/resume", "/batches/{batch_id}/retry-failed",
            "/batches/{batch_id}/cancel", "/batches/{batch_id}/documents"} <= set(paths)
    assert {"application/json", "multipart/form-data"} <= set(paths["/batches"]["post"]["requestBody"]["content"])
    assert client.get("/docs").status_code == 200
