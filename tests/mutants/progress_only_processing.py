"""The progress callback hears only ``processing``: outcomes (done, degraded, healed) are never
reported, so a progress bar never moves past "started".
"""

REPLACEMENTS = [
    ("        run.progress(doc.id, state, error=result.error, attempts=entry.attempts)\n", ""),
    ("    run.progress(doc.id, state)\n", ""),
]
LOSES = {"test_progress_reports_every_outcome"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"progress-on-every-state-change"
