"""The fault plan: seeded, replayable, and faithful to its rates."""

from __future__ import annotations

import json

import pytest
from batchlab.faults import CrashPlan, FaultPlan


def decisions(plan: FaultPlan, n: int = 2000) -> list[str | None]:
    return [plan.decide(f"src|doc-{i}|h", f"doc-{i}", 0, 1).error for i in range(n)]


class TestFaultPlan:
    def test_same_seed_same_faults_whatever_the_order(self) -> None:
        plan = FaultPlan(seed=3, transient_rate=0.05)
        forward = decisions(plan)
        backward = [plan.decide(f"src|doc-{i}|h", f"doc-{i}", 0, 1).error for i in reversed(range(2000))]
        assert forward == list(reversed(backward))

    def test_another_seed_gives_other_faults(self) -> None:
        assert decisions(FaultPlan(seed=3, transient_rate=0.05)) != decisions(FaultPlan(seed=4, transient_rate=0.05))

    def test_transient_rate_is_respected(self) -> None:
        failed = sum(e is not None for e in decisions(FaultPlan(seed=1, transient_rate=0.03), 20000))
        assert 0.02 * 20000 < failed < 0.04 * 20000

    def test_fail_first_k_fails_exactly_the_first_k_attempts(self) -> None:
        plan = FaultPlan(seed=1, fail_first_ids={"doc-9": 3})
        outcomes = [plan.decide("s|doc-9|h", "doc-9", 0, attempt).error for attempt in range(1, 6)]
        assert [o is not None for o in outcomes] == [True, True, True, False, False]

    def test_permanent_documents_always_fail_permanently(self) -> None:
        plan = FaultPlan(seed=1, permanent_ids=("doc-2",))
        faults = [plan.decide("s|doc-2|h", "doc-2", c, a) for c in range(3) for a in range(1, 4)]
        assert all(f.permanent and f.error == "parse_error" for f in faults)

    def test_every_call_of_a_slow_document_is_slow_and_no_other(self) -> None:
        plan = FaultPlan(seed=1, slow_ids=("doc-3",))
        assert all(plan.decide("s|doc-3|h", "doc-3", c, a).slow for c in range(5) for a in range(1, 3))
        assert not any(plan.decide(f"s|doc-{i}|h", f"doc-{i}", 0, 1).slow for i in range(50) if i != 3)

    def test_every_call_of_a_poison_document_fails_as_poison_and_no_other(self) -> None:
        plan = FaultPlan(seed=1, poison_ids=("doc-4",))
        assert all(plan.decide("s|doc-4|h", "doc-4", c, a).poison for c in range(3) for a in range(1, 4))
        assert not any(plan.decide(f"s|doc-{i}|h", f"doc-{i}", 0, 1).poison for i in range(50) if i != 4)

    def test_rates_outside_zero_one_are_refused(self) -> None:
        with pytest.raises(ValueError):
            FaultPlan(transient_rate=1.5)

    def test_round_trips_through_a_dict(self) -> None:
        plan = FaultPlan(seed=5, transient_rate=0.02, permanent_ids=("a",), fail_first_ids={"b": 2}, slow_ids=("c",),
                         stuck_ids=("d",), stuck_rate=0.01, outages=((1.0, 2.5),))
        assert FaultPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


class TestStuckCallsAndOutages:
    def test_a_stuck_document_hangs_on_its_first_attempt_of_each_chunk_only(self) -> None:
        """The retry of a stuck call answers: only the first attempt of each chunk hangs."""
        plan = FaultPlan(stuck_ids=("s",))
        assert [plan.decide("k", "s", chunk, 1).stuck for chunk in range(3)] == [True, True, True]
        assert not plan.decide("k", "s", 0, 2).stuck
        assert not plan.decide("k", "other", 0, 1).stuck

    def test_the_stuck_rate_is_seeded_per_call(self) -> None:
        """About ``stuck_rate`` of calls hang, the same ones for the same seed."""
        plan = FaultPlan(seed=3, stuck_rate=0.1)
        stuck = [plan.decide(f"k{i}", f"d{i}", 0, 1).stuck for i in range(2000)]
        assert 120 < sum(stuck) < 280
        assert stuck == [FaultPlan(seed=3, stuck_rate=0.1).decide(f"k{i}", f"d{i}", 0, 1).stuck for i in range(2000)]

    def test_an_outage_window_covers_its_start_and_not_its_end(self) -> None:
        """``(start_s, duration_s)``: unreachable from start_s for duration_s seconds, and only then."""
        plan = FaultPlan(outages=((1.0, 2.0), (10.0, 0.5)))
        assert [plan.in_outage(t) for t in (0.0, 0.99, 1.0, 2.9, 3.0, 10.2, 10.5)] == [
            False, False, True, True, False, True, False]

    @pytest.mark.parametrize("window", [(-1.0, 2.0), (1.0, -2.0), (1.0,)])
    def test_a_malformed_outage_is_refused(self, window: tuple[float, ...]) -> None:
        with pytest.raises(ValueError, match="outage"):
            FaultPlan(outages=(window,))  # type: ignore[arg-type]


class TestCrashPlan:
    def test_call_and_commit_crashes_need_a_position(self) -> None:
        with pytest.raises(ValueError):
            CrashPlan(kind="during_call", at=0)

    def test_unknown_kinds_are_refused(self) -> None:
        with pytest.raises(ValueError):
            CrashPlan(kind="meteor")

    def test_random_delay_is_seeded_and_inside_the_window(self) -> None:
        plan = CrashPlan(kind="random", window=(0.1, 0.4))
        delays = [plan.random_delay(seed, 1) for seed in range(50)]
        assert all(0.1 <= d <= 0.4 for d in delays) and len(set(delays)) > 40
        assert plan.random_delay(7, 1) == plan.random_delay(7, 1)
