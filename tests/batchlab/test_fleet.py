"""batchlab.fleet, workerproc and shardpass with real processes: N workers share a batch by shard leases.

No timing assertions: every wait below is a generous deadline for something that must happen, and leases
are short (1.5-2 s) so takeovers come quickly on an idle or a loaded machine.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.fleet import FLEET_ROLE, Fleet, run_fleet
from batchlab.fleet_audit import audit
from batchlab.fleet_figures import alone_tail, default_shards
from batchlab.leases import EXIT_STALE, HELD, SqliteLeaseStore
from batchlab.ledger import FIELDS, Ev, read_events
from batchlab.metrics import metrics_for_run
from batchlab.paths import solution_module
from batchlab.rundir import RunDir
from batchlab.runlock import RunDirLock, lock_is_held
from batchlab.runner import prepare
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.workerproc import EXIT_PASS_FAILED

CONCURRENCY = 2  #: documents in flight per pass: small, so that a shard takes a while even on an idle machine


def _spec(tmp_path: Path, docs: int, *, latency_ms: float = 30.0) -> RunSpec:
    input_path = write_input(tmp_path / "input.json", make_documents(docs, seed=15, max_bytes=2000))
    return RunSpec(impl=solution_module(), input=input_path, run_dir=tmp_path / "run",
                   config=BatchConfig(concurrency=CONCURRENCY), latency=LatencyModel(median_ms=latency_ms))


def _until(what: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.05)


def _puts_by(fleet: Fleet, owner: str, shard: int, token: int) -> int:
    store = SqliteLeaseStore(fleet.run.sink)
    try:
        (n,) = store._conn.execute("SELECT COUNT(*) FROM fenced_puts WHERE owner = ? AND shard = ? AND token = ?",
                                   (owner, shard, token)).fetchone()
    finally:
        store.close()
    return int(n)


def _freeze_mid_shard(fleet: Fleet, owner: str) -> tuple[int, int]:
    """SIGSTOP ``owner`` while it holds a shard it has already committed to; that shard and its token."""
    while True:
        _until(lambda: any(s.owner == owner and s.state == HELD and _puts_by(fleet, owner, s.shard, s.token) > 0
                           for s in fleet.shard_states()))
        fleet.signal(owner, signal.SIGSTOP)
        held = [s for s in fleet.shard_states() if s.owner == owner and s.state == HELD]
        if held and fleet.write_lock_free():
            return held[0].shard, held[0].token
        fleet.signal(owner, signal.SIGCONT)  # between two shards, or frozen inside a transaction: try again


def _finish(fleet: Fleet) -> None:
    try:
        _until(lambda: not fleet.step(), timeout_s=180.0)
    finally:
        fleet.close()


def _kill_w1_mid_shard(spec: RunSpec, *, workers: int, shards: int) -> tuple[Fleet, int, int]:
    """A fleet (not respawning) whose w1 is SIGKILLed mid-shard, run to its end; w1's shard and token then."""
    fleet = Fleet(spec, workers, lease_s=1.5, shards=shards, respawn=False)
    fleet.start()
    try:
        shard, token = _freeze_mid_shard(fleet, "w1")
        fleet.signal("w1", signal.SIGKILL)
    finally:
        _finish(fleet)
    return fleet, shard, token


def test_three_workers_complete_a_batch_with_no_duplicates(tmp_path: Path) -> None:
    """Three workers on one run directory: every shard done, every document committed once, metrics agree."""
    spec = _spec(tmp_path, 90, latency_ms=5.0)
    result = run_fleet(spec, workers=3, lease_s=2.0, timeout_s=180.0)
    assert result.complete and set(result.exits.values()) == {0}, result.lines()
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.lost == [] and found.duplicates == {} and found.stale_commits == [], found.line()
    assert found.committed == found.unique > 0
    metrics = metrics_for_run(spec.run_dir)
    assert metrics.completion_rate == 1.0 and metrics.duplicate_rate == 0.0


def test_a_killed_workers_shard_is_taken_over_without_a_command(tmp_path: Path) -> None:
    """w1 SIGKILLed mid-shard (not respawned): another worker takes its shard over; 0 lost, redo <= in flight."""
    spec = _spec(tmp_path, 80)
    fleet, shard, token = _kill_w1_mid_shard(spec, workers=3, shards=6)
    assert fleet.exits["w1"] == -signal.SIGKILL
    row = fleet.shard_states()[shard]
    assert row.state == "done" and row.owner != "w1" and row.token > token, row
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.lost == [] and found.committed == found.unique and found.stale_commits == [], found.line()
    assert found.takeovers >= 1 and found.extra_puts <= CONCURRENCY, found.line()


def test_a_dead_workers_shard_is_taken_over_while_the_survivors_own_shard_still_runs(tmp_path: Path) -> None:
    """w1 SIGKILLed mid-shard, w2 busy with a long shard of its own: w2's rescuer takes w1's over before its own ends."""
    spec = _spec(tmp_path, 240)  # two shards of ~120 documents, 2 in flight: several seconds each, even idle
    fleet, shard, token = _kill_w1_mid_shard(spec, workers=2, shards=2)
    events = read_events(fleet.run.ledger)
    starts = {e["pass"]: e for e in events if e["ev"] == Ev.PASS_START}
    ends = {e["pass"]: float(e["t"]) for e in events if e["ev"] == Ev.PASS_END}
    [own] = [p for p, e in starts.items() if e["owner"] == "w2" and e["token"] == 1]
    [rescue] = [p for p, e in starts.items() if e["owner"] == "w2" and e["token"] > token]
    assert float(starts[rescue]["t"]) < ends[own], (starts[rescue], ends[own])  # not after its own shard
    assert f"took over expired shard {shard}/2 token {token + 1} beside its own pass" in (
        fleet.run.path / "workers" / "w2.log").read_text()
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.lost == [] and found.committed == found.unique and found.stale_commits == [], found.line()
    assert found.extra_puts <= CONCURRENCY, found.line()


def test_a_paused_worker_whose_lease_was_taken_commits_nothing_after_it_wakes(tmp_path: Path) -> None:
    """w1 SIGSTOPped past its lease, its shard taken by w2, then SIGCONT: no put under its old token after that."""
    spec = _spec(tmp_path, 60)
    fleet = Fleet(spec, 2, lease_s=1.5, shards=4, respawn=False)
    fleet.start()
    try:
        shard, token = _freeze_mid_shard(fleet, "w1")
        before = _puts_by(fleet, "w1", shard, token)
        _until(lambda: fleet.shard_states()[shard].token > token)  # w2 took it over
        fleet.signal("w1", signal.SIGCONT)
    finally:
        _finish(fleet)
    assert _puts_by(fleet, "w1", shard, token) == before  # the zombie's writes after waking: none committed
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.stale_commits == [] and found.lost == [] and found.committed == found.unique, found.line()
    log = (fleet.run.path / "workers" / "w1.log").read_text()
    # how the zombie learnt it: a refused put, its renewal failing, or (nothing left to put) its finish refused
    assert (found.refusals >= 1 or f"lease on shard {shard}/4 (token {token}) lost" in log
            or f"token {token} is no longer current" in log), log


def test_a_pass_with_a_stale_token_is_refused_at_its_first_put_and_says_so(tmp_path: Path) -> None:
    """A shard pass started with a token that has moved on commits nothing, records the refusal, exits EXIT_STALE."""
    spec = _spec(tmp_path, 20, latency_ms=1.0)
    prepare(spec)
    store = SqliteLeaseStore(RunDir(spec.run_dir).sink)
    store.create_shards(spec.batch_id, 1)
    old = store.claim(spec.batch_id, "zombie", now=time.time(), lease_s=0.0)
    assert old is not None and store.claim(spec.batch_id, "other", now=time.time(), lease_s=600.0) is not None
    proc = subprocess.run([sys.executable, "-m", "batchlab.shardpass", str(spec.run_dir), "--batch-id", spec.batch_id,
                           "--shard", "0", "--of", "1", "--owner", "zombie", "--token", str(old.token), "--pass", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_STALE, proc.stderr
    (refused,) = store._conn.execute("SELECT COUNT(*) FROM fence_refusals WHERE owner = 'zombie'").fetchone()
    (outputs,) = store._conn.execute("SELECT COUNT(*) FROM outputs").fetchone()
    assert refused == 1 and outputs == 0
    stopped = [e for e in read_events(RunDir(spec.run_dir).ledger) if e["ev"] == Ev.STOPPED]
    assert [(e["signal"], e["token"], e["owner"]) for e in stopped] == [("stale_lease", old.token, "zombie")]
    assert FIELDS[Ev.STOPPED].problems(stopped[0]) == []


@pytest.mark.parametrize("workers", [2])
def test_a_second_batchlab_run_on_a_fleets_run_directory_is_refused_busy(tmp_path: Path, workers: int) -> None:
    """While `batchlab run --workers 2` owns the run directory, another `batchlab run` on it exits 2, run_dir_busy."""
    spec = _spec(tmp_path, 200)
    cli = [sys.executable, "-m", "batchlab", "run", "--input", str(spec.input), "--run-dir", str(spec.run_dir)]
    first = subprocess.Popen([*cli, "--workers", str(workers), "--lease-s", "2", "--latency-ms", "30",
                              "--concurrency", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: RunDir(spec.run_dir).spec.exists() and lock_is_held(spec.run_dir))
        second = subprocess.run([*cli, "--wait", "0.2"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and '"run_dir_busy"' in second.stdout, second.stdout + second.stderr
    finally:
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, out + err
    assert "shards done" in out


def test_a_worker_started_by_hand_joins_a_running_batch(tmp_path: Path) -> None:
    """`batchlab worker RUN_DIR --owner extra` beside a one-worker fleet claims shards of its batch and exits 0."""
    spec = _spec(tmp_path, 80)
    fleet = Fleet(spec, 1, lease_s=2.0, shards=8, respawn=False)
    with RunDirLock(spec.run_dir, role=FLEET_ROLE).acquire(0):
        fleet.start()
        try:
            extra = subprocess.run([sys.executable, "-m", "batchlab", "worker", str(spec.run_dir), "--owner",
                                    "extra", "--lease-s", "2"], capture_output=True, text=True, timeout=180)
        finally:
            _finish(fleet)
    assert extra.returncode == 0, extra.stdout + extra.stderr
    store = SqliteLeaseStore(fleet.run.sink)
    owners = {o for (o,) in store._conn.execute("SELECT owner FROM lease_claims")}
    assert owners == {"w1", "extra"}
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.lost == [] and found.duplicates == {}, found.line()


def test_a_second_fleet_on_a_finished_run_directory_keeps_its_shards_and_redoes_nothing(tmp_path: Path) -> None:
    """A second `run --workers` with another worker count keeps the batch's shard count and commits nothing more."""
    spec = _spec(tmp_path, 40, latency_ms=2.0)
    first = run_fleet(spec, workers=2, lease_s=2.0, timeout_s=180.0)
    again = run_fleet(spec, workers=3, lease_s=2.0, timeout_s=180.0)
    assert first.complete and again.complete and len(again.shards) == len(first.shards) == 2  # 2 workers' default
    found = audit(spec.run_dir, spec.input, spec.batch_id)
    assert found.duplicates == {} and found.lost == [], found.line()


def test_a_processor_that_raises_ends_the_fleet_instead_of_looping(tmp_path: Path, skeleton_impl: Path) -> None:
    """The unfinished skeleton raises in every pass: each worker gives its shard back and exits EXIT_PASS_FAILED."""
    spec = _spec(tmp_path, 20, latency_ms=1.0)
    spec.impl = skeleton_impl
    result = run_fleet(spec, workers=2, lease_s=2.0, timeout_s=180.0)
    assert not result.complete and set(result.exits.values()) == {EXIT_PASS_FAILED}, result.lines()
    assert result.respawned == 0


def test_a_worker_refuses_a_run_directory_a_single_pass_holds(tmp_path: Path) -> None:
    """`batchlab worker` on a directory locked by a one-worker `batchlab run` (unfenced) exits 2, run_dir_busy."""
    spec = _spec(tmp_path, 10)
    prepare(spec)
    with RunDirLock(spec.run_dir, role="batchlab run").acquire(0):
        proc = subprocess.run([sys.executable, "-m", "batchlab", "worker", str(spec.run_dir), "--wait", "0.2"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '"run_dir_busy"' in proc.stdout, proc.stdout + proc.stderr
    assert not RunDir(spec.run_dir).sink.exists() or SqliteLeaseStore(RunDir(spec.run_dir).sink).shards(
        spec.batch_id) == []


def test_the_lone_tail_is_the_last_pass_running_after_every_other_ended() -> None:
    """Passes 1 (0-5 s) and 2 (1-9 s), 3 (2-4 s): pass 2 ran alone from 5 s to 9 s; one pass alone is no tail."""
    def ev(kind: Ev, p: int, t: float) -> dict[str, object]:
        return {"ev": kind, "pass": p, "t": t}

    events = [ev(Ev.PASS_START, 1, 0), ev(Ev.PASS_START, 2, 1), ev(Ev.PASS_START, 3, 2), ev(Ev.PASS_END, 3, 4),
              ev(Ev.PASS_END, 1, 5), ev(Ev.SINK_PUT, 2, 8), ev(Ev.PASS_END, 2, 9)]
    assert alone_tail(events) == 4.0
    assert alone_tail(events, since_pass=2) == 0.0


def test_the_default_shard_count_is_two_per_worker_unless_shards_would_be_too_small() -> None:
    """Two shards per worker on a large batch; one when two would be small; always a multiple of the workers."""
    assert default_shards(4, 100_000, 8) == 8
    assert default_shards(4, 2_000, 8) == 8
    assert default_shards(4, 1_000, 8) == 4
    assert default_shards(8, 2_000, 8) == default_shards(8, 400, 8) == 8
