"""Unbounded concurrency: every document of the batch is started at once, whatever ``config.concurrency`` says."""

REPLACEMENTS = [
    ("    slots = asyncio.Semaphore(config.concurrency)\n", "    slots = asyncio.Semaphore(1_000_000)\n"),
]
LOSES = {"test_concurrency_limit_is_respected"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"documents had service calls in flight at once > config.concurrency"
