"""Unlimited retries: ``max_attempts`` is ignored, so a call that keeps failing is retried without end."""

REPLACEMENTS = [
    ("        stop=stop_after_attempt(config.max_attempts),\n", "        stop=stop_after_attempt(10**9),\n"),
]
LOSES = {"test_max_attempts_is_honoured"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"unlimited retries"
