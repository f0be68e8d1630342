"""``batchlab run --store URL --workers N`` and ``batchlab worker --store URL --batch-id ID`` on a real PostgreSQL:
the command line a developer types, in real processes (the store's own behaviour is tested in test_pg*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from pgserver import need_psycopg

need_psycopg()

pytestmark = pytest.mark.slow


def batchlab(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m batchlab ARGV`` run to its end (at most five minutes), its output captured."""
    return subprocess.run([sys.executable, "-m", "batchlab", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    return write_input(tmp_path / "in.json", make_documents(40, seed=3, min_bytes=100, max_bytes=300))


def test_run_store_with_two_workers_completes_the_batch_and_metrics_store_reads_it(
        pg_db: str, source: Path, tmp_path: Path) -> None:
    """`run --store URL --workers 2` exits 0 and `metrics --store URL --batch-id ID --json` finds every document
    committed once."""
    done = batchlab("run", "--input", str(source), "--store", pg_db, "--batch-id", "cli", "--workers", "2",
                    "--run-dir", str(tmp_path / "local"), "--latency-ms", "2", "--fault-rate", "0.02", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = batchlab("metrics", "--store", pg_db, "--batch-id", "cli", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    figures = json.loads(shown.stdout)
    assert (figures["completed"], figures["completion_rate"], figures["duplicate_rate"]) == (40, 1.0, 0.0)


def test_worker_store_joining_a_finished_batch_commits_nothing(pg_db: str, source: Path, tmp_path: Path) -> None:
    """`worker --store URL --batch-id ID` on a batch whose shards are all done exits 0 and writes nothing again."""
    assert batchlab("run", "--input", str(source), "--store", pg_db, "--batch-id", "cli", "--workers", "2",
                    "--run-dir", str(tmp_path / "local"), "--latency-ms", "2", cwd=tmp_path).returncode == 0
    before = json.loads(batchlab("metrics", "--store", pg_db, "--batch-id", "cli", "--json", cwd=tmp_path).stdout)
    joined = batchlab("worker", "--store", pg_db, "--batch-id", "cli", "--folder", str(tmp_path / "late"),
                      cwd=tmp_path)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    after = json.loads(batchlab("metrics", "--store", pg_db, "--batch-id", "cli", "--json", cwd=tmp_path).stdout)
    assert after["completed"] == before["completed"] == 40
    assert after["duplicate_rate"] == 0.0


def test_worker_without_a_run_directory_or_a_store_is_the_unified_error(tmp_path: Path) -> None:
    """`batchlab worker` with neither a run directory nor --store exits 2 with a usage_error body."""
    done = batchlab("worker", cwd=tmp_path)
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["code"] == "usage_error"


def test_chaos_workers_without_a_run_directory_or_a_store_is_the_unified_error(tmp_path: Path) -> None:
    """`batchlab chaos --workers 2` with neither a run directory nor --store exits 2 with a usage_error body."""
    done = batchlab("chaos", "--workers", "2", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "usage_error"
    assert list(tmp_path.iterdir()) == [], "nothing started, nothing written"


def test_run_with_a_store_that_is_not_a_postgresql_url_is_the_unified_error(source: Path, tmp_path: Path) -> None:
    """`run --store notaurl` exits 2 with a usage_error body naming the store, not psycopg's traceback."""
    done = batchlab("run", "--input", str(source), "--store", "notaurl", "--workers", "2",
                    "--run-dir", str(tmp_path / "local"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout)["error"]
    assert (error["code"], error["details"]) == ("usage_error", {"store": "notaurl"})
