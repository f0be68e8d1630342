"""A breaker whose successful probe does not close it: after the first outage it stays half-open for good.

Graded on step 03 only (where its breaker tests lose); in a batch it would make every call a lone probe.
"""

REPLACEMENTS = [
    ("        self._failures = 0\n        if probe:\n            self._opened_at = None  # the probe succeeded: closed\n",
     "        self._failures = 0\n"),
]
LOSES = {"test_breaker_closes_on_probe_success"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"breaker-closes-on-success"
GRADER_ARGS = ["--step", "backoff"]
