"""Random kills always land while work is outstanding, on a fast idle machine and on a loaded one."""

from __future__ import annotations

import pytest
from batchlab.documents import Document, try_parse
from batchlab.faults import CRASH_RANDOM
from batchlab.service import guaranteed_busy_s

from grader.hidden.scenarios import HIDDEN_SCENARIOS
from grader.scenarios import PUBLIC_SCENARIOS, Scenario

RANDOM_KILL_SCENARIOS = [sc for sc in (*PUBLIC_SCENARIOS, *HIDDEN_SCENARIOS)
                         if any(c.kind == CRASH_RANDOM for c in sc.crashes)]


def test_there_are_public_and_hidden_random_kill_scenarios() -> None:
    assert {sc.hidden for sc in RANDOM_KILL_SCENARIOS} == {False, True}


@pytest.mark.parametrize("scenario", RANDOM_KILL_SCENARIOS, ids=lambda sc: sc.name)
def test_a_document_stays_in_flight_well_past_the_latest_random_kill(scenario: Scenario) -> None:
    """Every pass restarts the unfinished whales, so the slowest one bounds each pass from below.

    A pass cannot end before its first service call plus the slowest document's guaranteed
    busy time (its chunks go in order, and sleeps never return early); the kill comes at
    most ``window[1]`` after that first call. A margin of 2.5 keeps the kill inside the
    work when the grader's polling thread is itself slowed by a loaded machine.
    """
    docs = [d for d in map(try_parse, scenario.documents()) if isinstance(d, Document)]
    slowest = max(guaranteed_busy_s(d, scenario.plan, scenario.latency) for d in docs)
    latest_kill = max(c.window[1] for c in scenario.crashes if c.kind == CRASH_RANDOM)
    assert slowest >= 2.5 * latest_kill, (scenario.name, round(slowest, 3), latest_kill)
