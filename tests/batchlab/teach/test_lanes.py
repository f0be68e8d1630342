"""The dashboard's worker lanes: the plain-Python fold (lanes.py), its HTML, and the widget view (fleetview.py).

The fold is tested on events written by hand (each case one ledger story) and on a real fleet: two worker
processes share a batch and one of them is SIGKILLed mid-shard, so its lane must say it lost that shard to
the worker that took it over. No timing assertions: every wait is a generous deadline.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from batchlab.contract import BatchConfig
from batchlab.examples import make_documents, write_input
from batchlab.fleet import FLEET_ROLE, Fleet
from batchlab.leases import HELD, ShardState
from batchlab.ledger import read_events
from batchlab.paths import solution_module
from batchlab.rundir import RunDir
from batchlab.runlock import RunDirLock
from batchlab.runspec import RunSpec
from batchlab.service import LatencyModel
from batchlab.sink import connect as sink_connect
from batchlab.teach.dashboard.fleetview import FleetLanesView, lanes_html, show_lanes
from batchlab.teach.dashboard.lanes import (
    EXITED,
    HOLDING,
    IDLE,
    LOST,
    REFUSED,
    Lane,
    LaneFold,
    is_fleet,
    read_lanes,
)


def _start(no: int, owner: str, shard: str, token: int) -> dict[str, object]:
    return {"ev": "pass_start", "t": float(no), "pass": no, "pid": 1, "t0": 0.0, "batch_id": "b", "crash": "none",
            "at": 0, "shard": shard, "owner": owner, "token": token}


def _put(no: int) -> dict[str, object]:
    return {"ev": "sink_put", "t": 0.0, "pass": no, "pid": 1, "doc_id": "d", "key": "k"}


def _fold(*events: dict[str, object]) -> LaneFold:
    fold = LaneFold(Path("/nonexistent/ledger.jsonl"))
    for event in events:
        fold.apply(event)
    return fold


def _held(shard: int, owner: str, token: int, expires_at: float) -> ShardState:
    return ShardState("b", shard, 2, HELD, owner, token, expires_at, token)


class TestLaneFold:
    def test_commits_and_finished_shards_are_counted_per_worker_from_its_passes(self) -> None:
        """Each worker's commits are the sink puts of its own passes; a pass_end finishes one of its shards."""
        fold = _fold(_start(1, "w1", "0/2", 1), _put(1), _put(1), {"ev": "pass_end", "pass": 1},
                     _start(2, "w2", "1/2", 1), _put(2))
        lanes = {lane.owner: lane for lane in fold.lanes([], now=0.0)}
        assert (lanes["w1"].commits, lanes["w1"].finished, lanes["w1"].passes) == (2, 1, 1)
        assert (lanes["w2"].commits, lanes["w2"].finished) == (1, 0)

    def test_a_pass_that_never_ended_and_whose_shard_was_claimed_again_is_lost_to_the_taker(self) -> None:
        """w1's pass on shard 0 never ended and w2 claimed shard 0 with token 2: w1 lost it, w2 took it over."""
        fold = _fold(_start(1, "w1", "0/2", 1), _put(1), _start(2, "w2", "0/2", 2), _put(2))
        lanes = {lane.owner: lane for lane in fold.lanes([], now=0.0)}
        assert lanes["w1"].lost == ("0/2 token 1 -> w2",) and lanes["w1"].state == LOST
        assert lanes["w2"].took_over == ("0/2 token 2 <- w1",) and lanes["w2"].lost == ()

    def test_a_pass_that_ended_but_whose_shard_was_claimed_again_lost_it_before_its_finish(self) -> None:
        """A done shard is never claimed again: w1 died between its pass_end and its finish, and lost shard 0."""
        fold = _fold(_start(1, "w1", "0/2", 1), {"ev": "pass_end", "pass": 1}, _start(2, "w2", "0/2", 2))
        lanes = {lane.owner: lane for lane in fold.lanes([], now=0.0)}
        assert lanes["w1"].lost == ("0/2 token 1 -> w2",) and lanes["w2"].took_over == ("0/2 token 2 <- w1",)

    def test_a_worker_holding_a_rescued_shard_beside_its_own_shows_both(self) -> None:
        """w2 holds shard 1 (its own) and shard 0 taken over from w1: the lane shows 1/2 and the rescue beside it."""
        fold = _fold(_start(1, "w1", "0/2", 1), _start(2, "w2", "1/2", 1), _start(3, "w2", "0/2", 2))
        lanes = {lane.owner: lane for lane in fold.lanes([_held(0, "w2", 2, 110.0), _held(1, "w2", 1, 110.0)],
                                                         now=100.0)}
        assert lanes["w2"].state == HOLDING and lanes["w2"].shard == "0/2" and lanes["w2"].also == ("1/2 token 1",)
        assert lanes["w2"].took_over == ("0/2 token 2 <- w1",) and lanes["w1"].also == ()
        assert "+ 1/2 token 1" in lanes_html(list(lanes.values()))

    def test_a_worker_that_claims_its_own_shard_again_lost_nothing(self) -> None:
        """A re-claim by the same owner (its lease expired unnoticed, nobody else came) is no takeover."""
        fold = _fold(_start(1, "w1", "0/2", 1), _start(2, "w1", "0/2", 2), {"ev": "pass_end", "pass": 2})
        [lane] = fold.lanes([], now=0.0)
        assert lane.lost == () and lane.took_over == () and lane.state == IDLE

    def test_a_refused_put_marks_the_lane_and_the_lease_table_gives_shard_token_and_time_left(self) -> None:
        """A stale_lease stop counts as refused; the held row gives the lane its shard, token and seconds left."""
        fold = _fold(_start(1, "w1", "0/2", 1), {"ev": "stopped", "pass": 1, "signal": "stale_lease"},
                     _start(2, "w2", "0/2", 2))
        lanes = {lane.owner: lane for lane in fold.lanes([_held(0, "w2", 2, 110.0)], now=100.0)}
        assert lanes["w1"].refused == 1 and lanes["w1"].state == REFUSED
        assert (lanes["w2"].state, lanes["w2"].shard, lanes["w2"].token) == (HOLDING, "0/2", 2)
        assert lanes["w2"].expires_in_s == pytest.approx(10.0)

    def test_a_worker_the_caller_saw_die_by_a_signal_is_killed_and_workers_are_in_their_order(self) -> None:
        """An exit code from the fleet ends the lane (SIGKILL: killed); w2 sorts before w10 and w1.4 after w1."""
        fold = _fold(_start(1, "w10", "0/2", 1), _start(2, "w2", "1/2", 1))
        lanes = fold.lanes([], now=0.0, exits={"w2": -9}, workers=["w1", "w1.4"])
        assert [lane.owner for lane in lanes] == ["w1", "w1.4", "w2", "w10"]
        assert lanes[2].state == EXITED and lanes[2].killed and not lanes[3].killed

    def test_feed_folds_only_complete_lines_and_continues_where_it_stopped(self, tmp_path: Path) -> None:
        """A line still being written waits for the next feed; nothing is folded twice."""
        ledger = tmp_path / "ledger.jsonl"
        ledger.write_text('{"ev":"pass_start","pass":1,"owner":"w1","shard":"0/1","token":1}\n{"ev":"sink_put",',
                          encoding="utf-8")
        fold = LaneFold(ledger)
        assert fold.feed() == 1
        with ledger.open("a", encoding="utf-8") as fh:
            fh.write('"pass":1}\n')
        assert fold.feed() == 1 and fold.feed() == 0
        assert fold.lanes([], now=0.0)[0].commits == 1


class TestRender:
    def test_one_row_per_worker_with_its_figures_in_data_attributes(self) -> None:
        """The HTML has a row per lane whose data-* attributes carry state, shard, token, commits and takeovers."""
        text = lanes_html([Lane("w1", HOLDING, shard="1/4", token=3, expires_in_s=1.2, commits=17,
                                took_over=("1/4 token 3 <- w2",)), Lane("w2", EXITED, lost=("1/4 token 2 -> w1",),
                                                                        exit_code=-9)])
        assert 'data-owner="w1" data-state="holding" data-shard="1/4" data-token="3" data-commits="17"' in text
        assert 'data-owner="w2"' in text and 'data-killed="true"' in text and "SIGKILL" in text
        assert 'data-lost="1"' in text and 'data-took="1"' in text

    def test_a_run_that_is_no_fleet_says_so(self) -> None:
        """No lanes: a note that this run has no lease table, not an empty table."""
        assert "bl-lanes-empty" in lanes_html([]) and "<tr" not in lanes_html([])


def test_a_single_pass_run_directory_is_no_fleet_and_reading_it_creates_nothing(tmp_path: Path) -> None:
    """A sink without a lease table gives no lanes, and the check opens it read-only (no table is created)."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    sink_connect(run.sink).close()
    assert not is_fleet(run.path) and read_lanes(run.path, now=0.0, batch_id="b") == []
    conn = sqlite3.connect(run.sink)
    assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'leases'").fetchone() is None
    conn.close()


@dataclass
class KilledFleet:
    run_dir: Path
    batch_id: str
    victim: str
    shard: int
    exits: dict[str, int | None]


def _running(run_dir: Path, held: ShardState) -> bool:
    """The holder's pass on this shard and token has a ``pass_start`` in the ledger and no ``pass_end`` yet."""
    events = read_events(RunDir(run_dir).ledger)
    started = {e["pass"] for e in events if e["ev"] == "pass_start" and e.get("owner") == held.owner
               and str(e.get("shard")).split("/")[0] == str(held.shard) and int(e.get("token") or 0) == held.token}
    return bool(started) and not any(e["ev"] == "pass_end" and e["pass"] in started for e in events)


@pytest.fixture(scope="module")
def killed_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KilledFleet]:
    """Two workers on four shards of the reference's batch; one SIGKILLed mid-shard; run to the end."""
    tmp = tmp_path_factory.mktemp("lanes")
    spec = RunSpec(impl=solution_module(), input=write_input(tmp / "input.json", make_documents(80, seed=4, max_bytes=800)),
                   run_dir=tmp / "run", config=BatchConfig(concurrency=2), latency=LatencyModel(median_ms=30))
    with RunDirLock(spec.run_dir, role=FLEET_ROLE).acquire(30):
        fleet = Fleet(spec, 2, lease_s=1.5, shards=4)
        try:
            fleet.start()
            deadline = time.monotonic() + 120
            while not any(e["ev"] == "sink_put" for e in read_events(RunDir(spec.run_dir).ledger)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            # Mid-shard: a held lease whose pass has started (the lanes know a worker by its passes) and not ended.
            while not (holders := [s for s in fleet.shard_states() if s.state == HELD and _running(spec.run_dir, s)]):
                assert time.monotonic() < deadline, "no worker held a shard"
                time.sleep(0.02)
            held = holders[0]
            fleet.signal(held.owner, signal.SIGKILL)
            while fleet.step():
                assert time.monotonic() < deadline + 120, "the fleet did not finish"
                time.sleep(0.1)
        finally:
            fleet.close()
    yield KilledFleet(spec.run_dir, spec.batch_id, held.owner, held.shard, dict(fleet.exits))


@pytest.mark.slow
class TestOnARealFleet:
    def test_every_worker_has_a_lane_and_their_commits_add_up_to_the_sink_s_puts(self, killed_fleet: KilledFleet) -> None:
        """One lane per worker the fleet started (the replacement too); commits sum to the ledger's puts."""
        lanes = read_lanes(killed_fleet.run_dir, now=time.time(), exits=killed_fleet.exits)
        puts = sum(e["ev"] == "sink_put" for e in read_events(RunDir(killed_fleet.run_dir).ledger))
        assert {lane.owner for lane in lanes} == set(killed_fleet.exits)
        assert sum(lane.commits for lane in lanes) == puts > 0

    def test_the_killed_worker_s_lane_says_it_was_killed_and_which_shard_it_lost(self, killed_fleet: KilledFleet) -> None:
        """The SIGKILLed worker's lane is killed and names its shard as lost; another lane took it over."""
        lanes = {lane.owner: lane for lane in read_lanes(killed_fleet.run_dir, now=time.time(),
                                                         exits=killed_fleet.exits)}
        victim = lanes[killed_fleet.victim]
        assert victim.killed and any(lost.startswith(f"{killed_fleet.shard}/4 ") for lost in victim.lost)
        takers = [lane for lane in lanes.values() if any(t.startswith(f"{killed_fleet.shard}/4 ") for t in lane.took_over)]
        assert len(takers) == 1 and takers[0].owner != killed_fleet.victim

    def test_the_widget_shows_the_same_lanes_and_its_refresher_stops(self, killed_fleet: KilledFleet) -> None:
        """FleetLanesView renders one row per lane; start() refreshes in a thread that stop() ends."""
        view = FleetLanesView(killed_fleet.run_dir, exits=lambda: killed_fleet.exits, refresh_s=0.02)
        view.start()
        final = view.stop()
        assert view._thread is not None and not view._thread.is_alive()
        assert view.widget.value.count('class="bl-lane"') == len(final) == len(killed_fleet.exits)
        assert f'data-owner="{killed_fleet.victim}"' in view.widget.value and 'data-killed="true"' in view.widget.value

    def test_show_lanes_displays_a_view_that_keeps_refreshing_until_stopped(self, killed_fleet: KilledFleet) -> None:
        """show_lanes() (a notebook cell on a terminal's fleet) starts the refresher; stop() ends it."""
        view = show_lanes(killed_fleet.run_dir)
        assert view._thread is not None and view._thread.is_alive()
        assert len(view.stop()) == len(killed_fleet.exits) and not view._thread.is_alive()

    def test_the_teacher_dashboard_given_a_fleet_s_directory_shows_its_lanes_below_its_own_panels(
            self, killed_fleet: KilledFleet, tmp_path: Path) -> None:
        """Dashboard(fleet_dir=...) adds the lanes panel (one row per worker), refreshed until close()."""
        from batchlab.teach.dashboard.model import DashboardModel
        from batchlab.teach.dashboard.view import Dashboard

        dash = Dashboard(DashboardModel(impl=solution_module(), runs_dir=tmp_path), fleet_dir=killed_fleet.run_dir)
        try:
            assert dash.fleet_lanes is not None and dash.widget.children[-1] is dash.fleet_lanes.widget
            assert dash.fleet_lanes.widget.value.count('class="bl-lane"') == len(killed_fleet.exits)
        finally:
            dash.close()
        assert dash.fleet_lanes._thread is not None and not dash.fleet_lanes._thread.is_alive()
