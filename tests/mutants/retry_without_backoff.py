"""Retry without backoff or jitter: failed calls are retried at once, all clients together."""

REPLACEMENTS = [
    ("    return min(config.max_delay, config.base_delay * 2**attempt) + rand() * config.jitter\n",
     "    return 0.0\n"),
    ('''        wait=wait_exponential(multiplier=config.base_delay, exp_base=2, min=0, max=config.max_delay)
        + wait_random(0, config.jitter),
''', '''        wait=wait_exponential(multiplier=0, max=0),
'''),
]
LOSES = {"test_backoff_grows_exponentially", "test_backoff_jitter_is_bounded_and_present", "test_backoff_is_capped",
         "test_retries_wait_with_backoff"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"retrying at once"
