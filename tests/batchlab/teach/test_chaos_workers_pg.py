"""batchlab.teach.chaos_workers on a real PostgreSQL: worker kills, one zombie and one server restart, audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgserver import PgServer, need_psycopg

need_psycopg()

from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.teach.chaos_workers import ChaosTarget, run_chaos_workers

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
