"""The fault plan: seeded, replayable, and faithful to its rates."""

from __future__ import annotations

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
        plan = FaultPlan(seed=5, transient_rate=0.02, permanent_ids=("a",), fail_first_ids={"b": 2}, slow_ids=("c",))
        assert FaultPlan.from_dict(plan.to_dict()) == plan


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
