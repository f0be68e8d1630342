"""Worker processes sharing one batch through a real PostgreSQL: killed, paused past their lease, and a server restart.

Each worker here is a small script over the PostgreSQL store's parts (claim a shard, put its documents
through the fenced sink, renew after each put, finish it; the sink is the truth on a takeover), so these
tests prove the store's protocol with real processes and real signals, whatever drives it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections import Counter
from typing import IO

import pytest
from pgserver import PgServer, need_psycopg

need_psycopg()

from batchlab.pgleases import PgLeaseStore
from batchlab.pgsink import read_outputs, read_puts
from batchlab.pgstore import PgConnection, load_documents

WORKER = textwrap.dedent("""
    import sys, time, zlib
    from batchlab.documents import Document
    from batchlab.leases import DONE, StaleLease
    from batchlab.pgleases import PgLeaseStore
    from batchlab.pgsink import PgSink
    from batchlab.pgstore import PgConnection, iter_documents
    url, owner, lease_s, pause = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    db = PgConnection(url)
    store = PgLeaseStore(db)
    docs = list(iter_documents(db, "b"))
    while not all(s.state == DONE for s in store.shards("b")):
        lease = store.claim("b", owner, now=time.time(), lease_s=lease_s)
        if lease is None:
            time.sleep(0.1)
            continue
        print("claim", lease.shard, lease.token, flush=True)
        sink = PgSink(db, "b", guard=store.fence(lease, time.time))
        for raw in docs:
            if zlib.crc32(raw["id"].encode()) % lease.n_shards != lease.shard or raw["id"] in sink:
                continue
            print("start", raw["id"], flush=True)
            time.sleep(pause)
            try:
                sink.put(raw["id"], Document(**raw), ["c"], [[1.0]])
            except StaleLease:
                store.refuse(lease, raw["id"], now=time.time())
                print("refused", raw["id"], flush=True)
                sys.exit(7)
            store.renew(lease, now=time.time(), lease_s=lease_s)
        store.finish(lease)
    print("done", flush=True)
""")

DOCS = [{"id": f"d{i:02d}", "content": f"text {i}", "source": "s"} for i in range(16)]


def start(url: str, owner: str, *, lease_s: float, pause: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WORKER, url, owner, str(lease_s), str(pause)],
                            stdout=subprocess.PIPE, text=True)


def wait_for(out: IO[str], word: str, times: int = 1) -> list[str]:
    """Read the worker's lines until ``word`` has started ``times`` of them; the lines read."""
    lines: list[str] = []
    while sum(line.startswith(word) for line in lines) < times:
        line = out.readline()
        assert line, f"the worker ended before {times} x {word!r}: {lines}"
        lines.append(line)
    return lines


def batch(url: str, shards: int = 4) -> PgConnection:
    db = PgConnection(url)
    load_documents(db, "b", DOCS)
    PgLeaseStore(db).create_shards("b", shards)
    return db


def finish(*procs: subprocess.Popen[str]) -> list[int]:
    for p in procs:
        p.communicate(timeout=300)
    return [p.returncode for p in procs]


def executions(db: PgConnection) -> Counter[str]:
    return Counter(p["key"] for p in read_puts(db, "b"))


@pytest.mark.slow
def test_a_killed_workers_shard_is_taken_over_with_nothing_lost(pg_db: str) -> None:
    """SIGKILL mid-shard: the others take its shard once the lease expires; every document committed, duplicates at
    most the one in flight."""
    db = batch(pg_db)
    victim = start(pg_db, "victim", lease_s=2.0, pause=0.3)
    assert victim.stdout is not None
    wait_for(victim.stdout, "start", 2)
    victim.send_signal(signal.SIGKILL)
    others = [start(pg_db, f"w{i}", lease_s=2.0, pause=0.05) for i in range(2)]
    assert finish(victim, *others) == [-signal.SIGKILL, 0, 0]
    assert sorted(r.key for r in read_outputs(db, "b")) == [d["id"] for d in DOCS]
    assert sum(n - 1 for n in executions(db).values()) <= 1
    took = db.transact(lambda c: c.execute("SELECT count(*) FROM lease_claims WHERE took_over_from = 'victim'")
                       .fetchone())
    assert took == (1,)


@pytest.mark.slow
def test_a_paused_worker_past_its_lease_commits_nothing_when_it_wakes(pg_db: str) -> None:
    """SIGSTOP past the lease, another worker finishes the batch, SIGCONT: the zombie's put is refused (exit 7)."""
    db = batch(pg_db, shards=2)
    zombie = start(pg_db, "zombie", lease_s=1.5, pause=0.5)
    assert zombie.stdout is not None
    wait_for(zombie.stdout, "start")
    zombie.send_signal(signal.SIGSTOP)
    try:
        assert finish(start(pg_db, "w", lease_s=1.5, pause=0.0)) == [0]
    finally:
        zombie.send_signal(signal.SIGCONT)
    out, _ = zombie.communicate(timeout=300)
    assert zombie.returncode == 7 and out.startswith("refused")
    assert sorted(r.key for r in read_outputs(db, "b")) == [d["id"] for d in DOCS]
    assert set(executions(db).values()) == {1}
    refusals = db.transact(lambda c: c.execute("SELECT owner, token FROM fence_refusals").fetchall())
    assert refusals == [("zombie", 1)]


@pytest.mark.slow
def test_workers_reconnect_after_a_server_restart_and_finish(pg: PgServer, pg_db: str) -> None:
    """The server crash-stopped and started again mid-batch: the workers reconnect and go on; nothing is lost."""
    db = batch(pg_db)
    workers = [start(pg_db, f"w{i}", lease_s=30.0, pause=0.1) for i in range(2)]
    assert workers[0].stdout is not None
    wait_for(workers[0].stdout, "start", 2)
    pg.restart()
    assert finish(*workers) == [0, 0]
    assert sorted(r.key for r in read_outputs(db, "b")) == [d["id"] for d in DOCS]
    assert sum(n - 1 for n in executions(db).values()) <= len(workers)  # an ambiguous commit each at most
