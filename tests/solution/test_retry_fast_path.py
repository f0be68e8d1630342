"""The reference's first attempt runs without a tenacity retrying object (issue 17 item 5: cost per document).

A retrying object costs more than a whole zero-latency call, so ``process_document`` makes one only
after a transient failure, and replays that failure as the retrying object's first attempt. These
tests pin that the schedule, the attempt budget and the retry count are those of ``make_retrying``.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest
from batchlab.contract import BatchConfig
from batchlab.documents import parse_document
from batchlab.paths import solution_module
from batchlab.service import PermanentServiceError, TransientServiceError
from batchlab.testing import RecordingSleep
from batchlab.worker import load_impl

CONFIG = BatchConfig(max_attempts=4, base_delay=0.1, max_delay=0.25, jitter=0.01, breaker_failures=0)
DOC = parse_document({"id": "doc-1", "source": "wiki", "content": "one short document"})


@pytest.fixture(scope="module")
def ref() -> ModuleType:
    return load_impl(solution_module(), name="reference_retry_fast_path")


class Script:
    """A service double: each call takes the next outcome ('ok', 'transient', 'permanent'); the last repeats."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def embed(self, doc: Any, chunk: int, text: str) -> list[float]:
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome == "transient":
            raise TransientServiceError("timeout", "slow")
        if outcome == "permanent":
            raise PermanentServiceError("parse_error", "bad")
        return [0.5]


def run(ref: ModuleType, service: Script, sleep: RecordingSleep, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, int]:
    """process_document on DOC; also how many retrying objects it made."""
    made = 0
    real = ref.make_retrying

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal made
        made += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(ref, "make_retrying", counting)
    return asyncio.run(ref.process_document(DOC, service=service, config=CONFIG, sleep=sleep)), made


def waits_match(delays: list[float], bases: tuple[float, ...]) -> bool:
    """Each wait is its base (``min(max_delay, base_delay * 2**i)``) plus a jitter in [0, config.jitter]."""
    return len(delays) == len(bases) and all(0 <= d - b <= CONFIG.jitter + 1e-9 for d, b in zip(delays, bases, strict=False))


def test_a_call_that_succeeds_at_once_makes_no_retrying_object(ref: ModuleType,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One successful call: one service call, no wait, no retry and no tenacity object."""
    service, sleep = Script("ok"), RecordingSleep()
    result, made = run(ref, service, sleep, monkeypatch)
    assert (result.mode, result.retries, service.calls, sleep.delays, made) == ("full", 0, 1, [], 0)


def test_transient_failures_wait_the_backoff_schedule_then_succeed(ref: ModuleType,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two transient failures then an answer: 3 calls, waits of about base*2**0 and base*2**1, 2 retries."""
    service, sleep = Script("transient", "transient", "ok"), RecordingSleep()
    result, made = run(ref, service, sleep, monkeypatch)
    assert (result.mode, result.retries, service.calls, made) == ("full", 2, 3, 1)
    assert waits_match(sleep.delays, (0.1, 0.2))


def test_the_budget_counts_the_bare_first_attempt(ref: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service that always fails transiently is called max_attempts times in all, the waits capped at max_delay."""
    service, sleep = Script("transient"), RecordingSleep()
    result, _ = run(ref, service, sleep, monkeypatch)
    assert (result.mode, result.error, service.calls, result.retries) == ("degraded", "retries_exhausted:timeout",
                                                                          CONFIG.max_attempts, CONFIG.max_attempts - 1)
    assert waits_match(sleep.delays, (0.1, 0.2, 0.25))


def test_a_permanent_error_after_a_transient_one_degrades_without_more_calls(
        ref: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transient failure, then a permanent one: 2 calls, 1 wait, degraded as permanent."""
    service, sleep = Script("transient", "permanent"), RecordingSleep()
    result, _ = run(ref, service, sleep, monkeypatch)
    assert (result.mode, result.error, service.calls, len(sleep.delays)) == ("degraded", "permanent:parse_error", 2, 1)
