"""Unbounded concurrency: ``run_bounded`` starts every document at once, whatever ``limit`` (``config.concurrency``) says."""

REPLACEMENTS = [
    ("    slots = asyncio.Semaphore(limit)\n", "    slots = asyncio.Semaphore(1_000_000)\n"),
]
#: The batch runs its documents through run_bounded, so it breaks the batch's limit too.
LOSES = {"test_concurrency_limit_is_respected", "test_batch_keeps_to_config_concurrency", "test_scenario[outage]"}
MAY_LOSE: set[str] = set()
#: Every document at once: the calls in flight when the outage begins exceed what a breaker can stop.
SCENARIO_CHECKS = {"breaker in outage"}
MESSAGE = r"documents had service calls in flight at once > config.concurrency"
