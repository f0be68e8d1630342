"""The report lies about ``recovered``: documents healed from the sink are counted as ``skipped``.
One-line change of the reference.
"""

REPLACEMENTS = [
    ("    run.report.recovered += 1\n", "    run.report.skipped += 1\n"),
]
LOSES = {"test_report_resume_figures_agree_with_ledger",
         *(f"test_scenario[{name}]" for name in ("crash_after_commit", "duplicates_in_input"))}
MAY_LOSE = {"test_scenario[random_kills]", "test_scenario[transient_faults]", "test_scenario[crash_during_call]",
            "test_scenario[permanent_and_invalid]", "test_scenario[large_batch]"}
SCENARIO_CHECKS = {"report agrees with ledger"}
MESSAGE = r"recovered: report says 0, ledger says at least 1"
