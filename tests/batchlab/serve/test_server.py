"""End-to-end: ``batchlab serve`` on a loopback port in its own process, a WebSocket client, real kills.

What a user of the service meets: a batch's worker SIGKILLed while the server
lives (the batch is interrupted), the server itself SIGKILLed and restarted
(it finds the batch, interrupted, and resumes it), Ctrl-C (the worker stops
cleanly), and in the end every document committed once: 0 duplicates, read
with :func:`batchlab.metrics.metrics_for_run` from the run directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from batchlab.host import pid_alive
from batchlab.metrics import metrics_for_run

from .conftest import WAIT_S, batch_bytes, wait_for

pytestmark = pytest.mark.slow


class Server:
    """One ``batchlab serve --port 0`` process over a data folder; :meth:`stop` kills it for good."""

    def __init__(self, data: Path, log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "batchlab", "serve", "--port", "0", "--data", str(data)],
                                     stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], WAIT_S)
        line = self.proc.stdout.readline().decode() if ready else ""
        assert "http://" in line, f"no URL printed: {line!r} (log: {log.read_text()[-2000:]})"
        self.url = line.split("http://", 1)[1].split("/", 1)[0]
        self.http = httpx.Client(base_url=f"http://{self.url}", timeout=30)
        self.workers: set[int] = set()

    def log_text(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(encoding="utf-8", errors="replace")

    def batch(self, batch_id: str) -> dict[str, Any]:
        data = self.http.get(f"/batches/{batch_id}").json()
        if data.get("worker_pid"):
            self.workers.add(data["worker_pid"])
        return data

    def wait(self, batch_id: str, ok: Any) -> dict[str, Any]:
        return wait_for(lambda: self.batch(batch_id), ok)

    def stop(self) -> None:
        """SIGKILL the server's group; its workers die with it (checked), any straggler is killed too."""
        self.http.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        for pid in self.workers:
            gone = wait_for(lambda: {"alive": pid_alive(pid)}, lambda s: not s["alive"], timeout=20)["alive"] is False
            if not gone:
                os.kill(pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Any]:
    """Starts servers over one data folder; every one is killed at the end, with its workers."""
    started: list[Server] = []

    def start() -> Server:
        server = Server(tmp_path / "service", tmp_path / "server.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Listener:
    """A WebSocket client (the ``websockets`` library) collecting every message in a thread."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.messages: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(connect(url, open_timeout=30))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                self.messages.append(json.loads(raw))
        except Exception:  # noqa: BLE001 - the connection closed (by the server, or by the test)
            pass

    def saw(self, predicate: Any) -> bool:
        return any(predicate(m) for m in list(self.messages))

    def close(self) -> None:
        self._stack.close()
        self.thread.join(10)


def test_a_killed_worker_and_a_killed_server_leave_the_batch_resumable_with_no_duplicates(servers, tmp_path):
    server = servers()
    created = server.http.post("/batches", content=batch_bytes(60, seed=5),
                               params={"latency_ms": "80", "concurrency": "1"},
                               headers={"content-type": "application/json"})
    assert created.status_code == 201, created.text
    bid = created.json()["id"]
    listener = Listener(f"ws://{server.url}/batches/{bid}/events")
    try:
        running = server.wait(bid, lambda b: b["state"] == "running" and b["counts"]["done"] >= 5
                              and b["worker_pid"])
        os.kill(running["worker_pid"], signal.SIGKILL)  # a real kill of the batch's worker
        killed = server.wait(bid, lambda b: b["state"] != "running")
        assert killed["state"] == "interrupted" and "killed" in killed["reason"], killed
        assert server.http.get("/").status_code in (200, 404)  # the server lives on
        wait_for(lambda: {"ok": listener.saw(lambda m: m.get("batch", {}).get("state") == "interrupted")},
                 lambda s: s["ok"])
        assert listener.saw(lambda m: m["type"] == "pass" and m["pass"]["outcome"] == "killed")
        assert listener.saw(lambda m: m["type"] == "snapshot") and listener.saw(
            lambda m: m["type"] == "progress" and 0 < m["batch"]["counts"]["done"] < 60)
        assert server.http.post(f"/batches/{bid}/resume").status_code == 202
        server.wait(bid, lambda b: b["state"] == "running" and b["counts"]["done"] >= killed["counts"]["done"] + 3)
        wait_for(lambda: {"ok": listener.saw(lambda m: m["type"] == "event" and m["resume"])}, lambda s: s["ok"])
        wait_for(lambda: {"ok": listener.saw(lambda m: m["type"] == "resource")}, lambda s: s["ok"])
    finally:
        listener.close()
    server.stop()  # SIGKILL of the server: its worker dies with it

    again = servers()
    found = again.batch(bid)
    assert found["state"] == "interrupted" and "server stopped" in found["reason"], found
    listener = Listener(f"ws://{again.url}/batches/{bid}/events")
    try:
        assert again.http.post(f"/batches/{bid}/resume").status_code == 202
        done = again.wait(bid, lambda b: b["state"] not in ("queued", "running"))
        wait_for(lambda: {"ok": listener.saw(lambda m: m["type"] == "final")}, lambda s: s["ok"])
    finally:
        listener.close()
    assert done["state"] == "completed" and done["counts"]["done"] == 60, done
    final = next(m for m in listener.messages if m["type"] == "final")
    assert final["metrics"]["summary"]["duplicate_rate"] == 0 and final["metrics"]["meets_thresholds"]
    metrics = metrics_for_run(tmp_path / "service" / "batches" / bid / "run")
    assert metrics.duplicates == [] and metrics.completion_rate == 1.0 and len(metrics.passes) == 3


def test_ctrl_c_stops_the_server_and_its_worker_cleanly_and_the_batch_resumes_after_a_restart(servers, tmp_path):
    server = servers()
    bid = server.http.post("/batches", content=batch_bytes(40, seed=6), params={"latency_ms": "80",
                           "concurrency": "1"}, headers={"content-type": "application/json"}).json()["id"]
    running = server.wait(bid, lambda b: b["state"] == "running" and b["counts"]["done"] >= 3 and b["worker_pid"])
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(WAIT_S)
    assert code == 130, f"exit {code} (server log: {server.log_text()[-3000:]})"  # 128 + SIGINT, as `run` exits
    wait_for(lambda: {"alive": pid_alive(running["worker_pid"])}, lambda s: not s["alive"], timeout=20)
    record = json.loads((tmp_path / "service" / "batches" / bid / "batch.json").read_text())
    assert record["state"] == "interrupted" and record["passes"][0]["outcome"] == "stopped", record
    again = servers()
    assert again.http.post(f"/batches/{bid}/resume").status_code == 202
    done = again.wait(bid, lambda b: b["state"] not in ("queued", "running"))
    assert done["state"] == "completed" and done["metrics"]["summary"]["duplicate_rate"] == 0, done


def test_connections_the_server_accepts_send_small_answers_at_once() -> None:
    """asyncio turns Nagle off only for TCP-protocol sockets: the listening socket says so, or every kept-alive
    answer waits ~40 ms for a delayed ACK (a browser's page of small requests felt it)."""
    import asyncio
    import socket

    from batchlab.serve.server import listening_socket

    async def accepted_nodelay() -> int:
        sock, _ = listening_socket("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            value = await asyncio.wait_for(seen, WAIT_S)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
