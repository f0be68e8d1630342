"""Fixtures of the batch service's tests: a manager over a temporary data folder, its test client, small batches.

Every test writes only under pytest's temporary folders; every wait is for a
state, bounded by a generous timeout, never a fixed sleep.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlab.examples import make_documents
from batchlab.paths import solution_module

pytest.importorskip("fastapi")
if not solution_module().exists():  # the student distribution: the service's tests run the reference
    pytest.skip("the reference solution is absent", allow_module_level=True)

with warnings.catch_warnings():  # Starlette's note that its TestClient will move to httpx2: not ours to act on
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from batchlab.serve.app import create_app  # noqa: E402
from batchlab.serve.manager import BatchManager  # noqa: E402

#: Generous bound of every wait for a state (a loaded 2-core machine).
WAIT_S = 90.0


def batch_bytes(n: int = 20, *, seed: int = 3, batch_id: str = "batch-t", invalid: int = 0, **extra: Any) -> bytes:
    """A small batch file (short documents: a pass takes about a second)."""
    docs = make_documents(n, seed=seed, min_bytes=100, max_bytes=600, duplicates=0, invalid=invalid, empty=0)
    return json.dumps({"batch_id": batch_id, "documents": docs, **extra}, ensure_ascii=False).encode()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "service"


@pytest.fixture
def manager(data_dir: Path) -> Iterator[BatchManager]:
    """A manager over a temporary data folder (its running workers are stopped at the end)."""
    m = BatchManager(data_dir, max_running=2)
    yield m
    m.shutdown()


@pytest.fixture
def client(manager: BatchManager) -> Iterator[TestClient]:
    """FastAPI's test client over the manager (the app's startup and shutdown run too)."""
    with TestClient(create_app(manager)) as c:
        yield c


def wait_for(get: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool],
             timeout: float = WAIT_S) -> dict[str, Any]:
    """Poll ``get`` until ``done`` says so; fail with the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = get()
    while not done(last):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout} s waiting; last answer: {json.dumps(last)[:2000]}")
        time.sleep(0.05)
        last = get()
    return last


def wait_state(client: Any, batch_id: str, *states: str, timeout: float = WAIT_S) -> dict[str, Any]:
    """The batch's detail once it is in one of ``states``."""
    return wait_for(lambda: client.get(f"/batches/{batch_id}").json(), lambda b: b.get("state") in states, timeout)
