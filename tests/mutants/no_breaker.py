"""No circuit breaker: the batch never builds one, so in an outage every document burns its retries against the dead service.

The breaker class itself is right (step 03 passes); the batch just does not use it.
"""

REPLACEMENTS = [
    ("                   breaker=CircuitBreaker(config, clock=clock) if config.breaker_failures else None)\n",
     "                   breaker=None)\n"),
]
LOSES = {"test_scenario[outage]"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"breaker in outage"}
MESSAGE = r"breaker-in-outage: calls to the unreachable service: pass 1: \d+; bound \d+ per pass"
