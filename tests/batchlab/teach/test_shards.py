"""Shard-level progress for real: two worker processes, two shards of one batch, one shared sink, one SIGKILL."""

from __future__ import annotations

import pytest
from batchlab.examples import make_documents, write_input
from batchlab.paths import solution_module
from batchlab.teach.shards import ShardRun, run_shards


@pytest.fixture(scope="module")
def shard_run(tmp_path_factory: pytest.TempPathFactory) -> ShardRun:
    """Shards 0/2 and 1/2 of 120 entries at once; shard 0 SIGKILLed right after its 15th commit, then resumed."""
    work = tmp_path_factory.mktemp("shards")
    input_path = write_input(work / "input.json", make_documents(120, seed=15, max_bytes=3000))
    return run_shards(impl=solution_module(), input_path=input_path, work=work / "run", kill_after=15)


def test_the_killed_shard_was_really_killed_and_the_other_finished(shard_run: ShardRun) -> None:
    """Pass 1 of shard 0 died of SIGKILL after exactly 15 commits; shard 1 ended normally with a report."""
    first = {p.shard: p for p in shard_run.passes if p.pass_no == 1}
    assert first["0/2"].killed and first["0/2"].commits == 15, first["0/2"]
    assert first["1/2"].returncode == 0 and first["1/2"].report is not None, first["1/2"].stderr


def test_nothing_is_committed_twice_and_nothing_is_lost(shard_run: ShardRun) -> None:
    """After the resume every document of the batch is committed once: 0 duplicates, 0 lost."""
    assert shard_run.duplicates == {} and shard_run.lost == []
    assert shard_run.committed == shard_run.unique > 0


def test_each_shard_ran_only_its_own_documents(shard_run: ShardRun) -> None:
    """The two shards' reports split the batch's unique documents between them, and each committed only its own."""
    last = {p.shard: p for p in shard_run.passes}  # each shard's last pass
    reports = {s: p.report for s, p in last.items()}
    assert all(r is not None for r in reports.values())
    uniques = {s: r["unique"] for s, r in reports.items() if r is not None}
    assert sum(uniques.values()) == shard_run.unique and min(uniques.values()) > 0, uniques
    assert shard_run.commits_by_shard() == uniques


def test_the_resumed_shard_redid_nothing(shard_run: ShardRun) -> None:
    """The resumed pass of shard 0 skipped its 14 marked documents and healed the one killed before its mark."""
    resumed = next(p for p in shard_run.passes if p.pass_no == 2)
    assert resumed.shard == "0/2" and resumed.report is not None
    assert (resumed.report["skipped"], resumed.report["recovered"]) == (14, 1), resumed.report
