"""Fleet workers on a real PostgreSQL (``python -m batchlab.pgworker``): the reference processor per shard, fenced
puts, a worker joining a running batch from a folder of its own, a killed worker's shard taken over."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pgserver import PgServer, need_psycopg

need_psycopg()

from batchlab.examples import make_documents, write_input
from batchlab.faults import FaultPlan
from batchlab.leases import DONE
from batchlab.paths import solution_module
from batchlab.pgbatch import publish_batch
from batchlab.pgleases import PgLeaseStore
from batchlab.pgmetrics import metrics_for_store
from batchlab.pgstore import PgConnection
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel

pytestmark = pytest.mark.slow


@pytest.fixture
def batch(pg_db: str, tmp_path: Path) -> str:
    """A 48-document batch with 2 % transient faults, published in 8 shards; the store's URL."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    source = write_input(tmp_path / "in.json", make_documents(48, seed=5, min_bytes=100, max_bytes=400))
    spec = RunSpec(impl=solution_module(), input=source, run_dir=tmp_path / "unused", batch_id="b",
                   plan=FaultPlan(seed=5, transient_rate=0.02), latency=LatencyModel(median_ms=20.0))
    publish_batch(PgConnection(pg_db), spec, shards=8)
    return pg_db


def worker(url: str, owner: str, folder: Path, *, lease_s: float = 5.0) -> subprocess.Popen[str]:
    """``python -m batchlab.pgworker`` joining batch ``b`` with the reference, from ``folder``."""
    return subprocess.Popen([sys.executable, "-m", "batchlab.pgworker", url, "--batch-id", "b", "--impl",
                             str(solution_module()), "--owner", owner, "--lease-s", str(lease_s),
                             "--folder", str(folder)], stdout=subprocess.PIPE, text=True, start_new_session=True)


def first_claim(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "claimed shard" in line, line
    return line


def test_a_worker_joining_a_running_batch_shares_it_and_nothing_is_done_twice(batch: str, tmp_path: Path) -> None:
    """A second worker started once the first is running claims shards of its own; the batch completes, 0 duplicates."""
    first = worker(batch, "first", tmp_path / "a")
    first_claim(first)
    second = worker(batch, "second", tmp_path / "b")
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outs
    assert "claimed shard" in outs[1]
    assert all(s.state == DONE for s in PgLeaseStore(PgConnection(batch)).shards("b"))
    metrics = metrics_for_store(batch, "b")
    assert metrics.completion_rate == 1.0 and metrics.duplicates == [] and metrics.unique == 48


def test_a_killed_workers_shard_is_taken_over_without_a_command(batch: str, tmp_path: Path) -> None:
    """SIGKILL of a worker and its pass mid-shard: another worker takes the shard once the lease expires; nothing lost,
    duplicates at most the killed pass's in-flight documents."""
    victim = worker(batch, "victim", tmp_path / "v", lease_s=3.0)
    first_claim(victim)
    victim.send_signal(signal.SIGKILL)  # the pass dies with it (its parent link)
    victim.communicate(timeout=60)
    survivor = worker(batch, "survivor", tmp_path / "s", lease_s=3.0)
    out = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, out
    db = PgConnection(batch)
    took = db.transact(lambda c: c.execute(
        "SELECT count(*) FROM lease_claims WHERE took_over_from = 'victim'").fetchone())
    assert took == (1,)
    metrics = metrics_for_store(batch, "b")
    assert metrics.completion_rate == 1.0 and metrics.missing == []
    assert sum(d.executions - 1 for d in metrics.duplicates) <= 8  # the reference's concurrency


def test_a_fleet_started_here_completes_the_published_batch(pg_db: str, tmp_path: Path) -> None:
    """``run_fleet``: the batch published, three local workers, every shard done, 0 duplicates, the metrics' keys."""
    from batchlab.pgfleet import run_fleet

    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    source = write_input(tmp_path / "in.json", make_documents(30, seed=6, min_bytes=100, max_bytes=400))
    spec = RunSpec(impl=solution_module(), input=source, run_dir=tmp_path / "unused", batch_id="b")
    exits = run_fleet(pg_db, spec, workers=3, shards=6, folder=tmp_path / "fleet", lease_s=5.0)
    assert sorted(exits.values()) == [0, 0, 0]
    metrics = metrics_for_store(pg_db, "b")
    assert metrics.completion_rate == 1.0 and metrics.duplicate_rate == 0.0 and metrics.unique == 30
    passes = {p.pass_no for p in metrics.passes}
    assert len(passes) >= 6  # one pass per claim at least, each under its own number


def test_workers_go_on_after_the_server_restarts_mid_batch(pg: PgServer, batch: str, tmp_path: Path) -> None:
    """The server crash-stopped and restarted while two workers run: they reconnect and the batch completes, nothing
    lost."""
    workers = [worker(batch, f"w{i}", tmp_path / f"w{i}", lease_s=10.0) for i in range(2)]
    first_claim(workers[0])
    pg.restart()
    outs = [p.communicate(timeout=600)[0] for p in workers]
    assert [p.returncode for p in workers] == [0, 0], outs
    metrics = metrics_for_store(batch, "b")
    assert metrics.completion_rate == 1.0 and metrics.missing == [] and metrics.unique == 48


def test_a_worker_for_a_batch_the_store_lacks_exits_2_with_batch_not_found(pg_db: str, tmp_path: Path) -> None:
    """No such batch: the worker prints the unified error and exits 2, no traceback."""
    import json

    proc = subprocess.run([sys.executable, "-m", "batchlab.pgworker", pg_db, "--batch-id", "nope", "--impl",
                           str(tmp_path / "x.py"), "--folder", str(tmp_path / "w"), "--join-wait-s", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["code"] == "batch_not_found", proc.stderr


class TestTheCommandSide:
    def test_worker_store_joins_a_published_batch_and_completes_it(self, batch: str, tmp_path: Path) -> None:
        """``cmd_worker_store`` (what ``worker --store URL --batch-id ID`` runs) finishes the batch alone: exit 0."""
        import argparse

        from batchlab.cli.store_cmds import cmd_worker_store

        args = argparse.Namespace(store=batch, batch_id="b", impl=solution_module(), owner="cli", lease_s=5.0,
                                  folder=tmp_path / "cli")
        assert cmd_worker_store(args) == 0
        assert metrics_for_store(batch, "b").completion_rate == 1.0

    def test_run_store_prints_each_worker_and_the_metric_table(self, pg_db: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
        """``run_store`` (what ``run --store URL --workers 2`` runs): both workers exit 0, the table follows, exit 0."""
        from batchlab.cli.store_cmds import run_store

        if not solution_module().exists():
            pytest.skip("needs the reference solution, which a student distribution leaves out")
        source = write_input(tmp_path / "in.json", make_documents(12, seed=8, min_bytes=100, max_bytes=300))
        spec = RunSpec(impl=solution_module(), input=source, run_dir=tmp_path / "unused", batch_id="r")
        assert run_store(spec, url=pg_db, workers=2, shards=4, lease_s=5.0, folder=tmp_path / "f") == 0
        out = capsys.readouterr().out
        assert out.count(": exit 0") == 2 and "completion" in out


def test_one_worker_runs_every_shard_in_one_long_lived_pass_runner(batch: str, tmp_path: Path) -> None:
    """A worker alone on the 8-shard batch: 8 passes, all from one process (the pass runner it keeps from shard to
    shard, as on a run directory), not a new process per shard."""
    from batchlab.ledger import Ev
    from batchlab.pgstore import iter_events

    alone = worker(batch, "alone", tmp_path / "alone")
    out = alone.communicate(timeout=600)[0]
    assert alone.returncode == 0, out
    starts = [e for e in iter_events(PgConnection(batch), "b") if e["ev"] == Ev.PASS_START]
    assert len(starts) == 8 and len({e["pass"] for e in starts}) == 8
    assert len({e["pid"] for e in starts}) == 1 and starts[0]["pid"] != alone.pid
