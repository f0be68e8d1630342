"""Unbounded concurrency: ``run_bounded`` starts every document at once, whatever ``limit`` (``config.concurrency``) says."""

REPLACEMENTS = [
    ("    slots = asyncio.Semaphore(limit)\n", "    slots = asyncio.Semaphore(1_000_000)\n"),
]
LOSES = {"test_concurrency_limit_is_respected"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"documents had service calls in flight at once > config.concurrency"
