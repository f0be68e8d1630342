"""batchlab.workerproc: the renewal thread keeps a lease alive, and reports at once when the token moved on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from batchlab.leases import SqliteLeaseStore
from batchlab.workerproc import Renewer


def test_the_renewer_keeps_a_lease_past_its_first_expiry(tmp_path: Path) -> None:
    """A 0.3 s lease renewed every ~0.1 s is still valid after three of its lengths, and never reported lost."""
    store = SqliteLeaseStore(tmp_path / "sink.sqlite")
    store.create_shards("b", 1)
    clock = [0.0]
    lease = store.claim("b", "w1", now=0.0, lease_s=0.3)
    assert lease is not None
    lost = threading.Event()
    renewer = Renewer(tmp_path / "sink.sqlite", lease, lease_s=0.3, on_lost=lost.set, clock=lambda: clock[0])
    renewer.start()
    renewed, deadline = 0, time.monotonic() + 120
    while renewed < 3:
        assert time.monotonic() < deadline, "no renewal"  # move the clock a lease length at a time, once the row shows a renewal at that time
        row = store.shards("b")[0]
        if row.expires_at >= clock[0] + 0.3:
            renewed += 1
            clock[0] += 0.3
        assert not lost.is_set()
        time.sleep(0.01)
    assert store.check(lease, now=clock[0] - 0.01)
    renewer.done.set()
    renewer.join()
    assert not renewer.lost


def test_the_renewer_reports_a_lease_taken_over(tmp_path: Path) -> None:
    """Once another owner claimed the shard, the next renewal fails and ``on_lost`` is called, once."""
    store = SqliteLeaseStore(tmp_path / "sink.sqlite")
    store.create_shards("b", 1)
    lease = store.claim("b", "w1", now=0.0, lease_s=0.3)
    assert lease is not None and store.claim("b", "w2", now=1.0, lease_s=100.0) is not None
    calls: list[int] = []
    done = threading.Event()
    renewer = Renewer(tmp_path / "sink.sqlite", lease, lease_s=0.3,
                      on_lost=lambda: (calls.append(1), done.set()), clock=lambda: 1.1)
    renewer.start()
    assert done.wait(60)
    renewer.join(60)
    assert renewer.lost and calls == [1]
