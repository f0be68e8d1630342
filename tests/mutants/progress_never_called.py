"""The progress callback is never called: the batch ignores ``progress``, so the progress bar and the
teacher's dashboard see nothing. One-line change of the reference.
"""

REPLACEMENTS = [
    ("    report_progress = progress or no_progress\n", "    report_progress = no_progress  # TODO progress\n"),
]
LOSES = {"test_progress_reports_every_outcome"}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"progress-on-every-state-change"
