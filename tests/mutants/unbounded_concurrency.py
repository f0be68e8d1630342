"""Unbounded concurrency: ``run_bounded`` starts every document at once, whatever ``limit`` (``config.concurrency``) says."""

REPLACEMENTS = [
    ("    slots = asyncio.Semaphore(limit)\n", "    slots = asyncio.Semaphore(1_000_000)\n"),
]
#: The batch runs its documents through run_bounded, so it breaks the batch's limit too.
LOSES = {"test_concurrency_limit_is_respected", "test_batch_keeps_to_config_concurrency"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"documents had service calls in flight at once > config.concurrency"
