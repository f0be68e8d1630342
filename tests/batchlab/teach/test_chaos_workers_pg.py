"""batchlab.teach.chaos_workers on a real PostgreSQL: worker kills, one zombie and one server restart, audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.teach.chaos_workers import ChaosTarget, run_chaos_workers
from pgserver import PgServer, need_psycopg

need_psycopg()

pytestmark = pytest.mark.slow


def test_kills_a_zombie_and_a_server_restart_lose_nothing_and_no_stale_token_commits(
        pg: PgServer, pg_db: str, tmp_path: Path) -> None:
    """Three worker kills, one zombie taken over and the server crash-restarted mid-run on a store: every document
    committed, no stale-token commit, redone work within the in-flight bound."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    input_path = write_input(tmp_path / "input.json", make_documents(300, seed=15, max_bytes=2000))
    spec = RunSpec(impl=solution_module(), input=input_path, run_dir=tmp_path / "local", batch_id="chaos",
                   config=BatchConfig(concurrency=2), latency=LatencyModel(median_ms=30.0))
    lines: list[str] = []
    result = run_chaos_workers(spec, workers=3, kills=3, lease_s=1.5, min_s=0.3, max_s=0.8, seed=4,
                               on_line=lines.append,
                               target=ChaosTarget(store=pg_db, folder=tmp_path / "local", restart=pg.restart))
    assert result.ok, result.lines()
    print("\n".join(result.lines()))
    assert result.final is not None and result.final.stale_commits == [] and result.final.lost == []
    assert result.final.committed == result.final.unique > 250 and result.final.extra_puts <= result.bound
    whats = [e["what"] for e in result.events]
    assert sum(w.startswith("SIGKILL") for w in whats) == 3, result.lines()
    assert "server restarted" in whats, result.lines()
    zombie = [w for w in whats if w.startswith("zombie")]
    assert zombie and "taken over" in zombie[0], result.lines()


def test_the_chaos_command_on_a_store_restarts_the_server_with_the_given_command(
        pg: PgServer, pg_db: str, tmp_path: Path) -> None:
    """`batchlab chaos --workers 2 --store URL --batch-id ID --restart-server CMD --json`: exit 0, the restart among
    the events, every document committed and no stale-token commit."""
    import json
    import shlex
    import subprocess
    import sys

    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    input_path = write_input(tmp_path / "input.json", make_documents(200, seed=16, max_bytes=2000))
    pg_ctl = [str(pg.bindir / "pg_ctl"), "-D", str(pg.data), "-l", str(pg.folder / "server.log"), "-m", "immediate",
              "-w", "restart"]
    restart = shlex.join((["runuser", "-u", pg.user, "--"] if pg.user else []) + pg_ctl)
    done = subprocess.run([sys.executable, "-m", "batchlab", "chaos", str(tmp_path / "local"), "--workers", "2",
                           "--store", pg_db, "--batch-id", "cli", "--restart-server", restart, "--kills", "2",
                           "--input", str(input_path), "--impl", str(solution_module()), "--concurrency", "2",
                           "--latency-ms", "30", "--min-s", "0.3", "--max-s", "0.8", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "server restarted" in [e["what"] for e in result["events"]], result["events"]
    final = result["final"]
    assert final["lost"] == [] and final["stale_commits"] == [] and final["committed"] == final["unique"] > 150
