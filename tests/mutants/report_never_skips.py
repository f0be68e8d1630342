"""The report lies about ``skipped``, in another style: skipped documents are never counted (the
field stays 0), though the resume passes skip every committed key.
"""

REPLACEMENTS = [
    # A student without the reference's group commit (as tests/mutants/lying_hit_rate.py): every `done` mark is durable
    # when it returns, so a resume after a kill skips by markers; under the group a kill before its first commit
    # leaves no marker, every committed key is then `recovered`, and the lie (skipped = 0) would be the truth.
    ("        with grouped(run.store, config.shard) as run.group:  # marks the sink heals, committed in groups\n",
     "        with MarkGroup(None) as run.group:  # no group commit: every mark durable when it returns\n"),
    ("""    if entry is not None and entry.state in (DONE, DEGRADED):
        run.report.skipped += 1
        run.states[entry.state] += 1
        return None
""", """    if entry is not None and entry.state in (DONE, DEGRADED):
        run.states[entry.state] += 1
        return None  # nothing to do, nothing to report
"""),
]
# A resume after a clean pass (clean_run, outage, stuck_calls) seeks past the whole batch by the reference's global
# offset, whose prefix counts are added to ``skipped`` elsewhere: the lie shows wherever a resume skips by markers.
LOSES = {"test_report_resume_figures_agree_with_ledger", "test_report_hit_rate_agrees_with_ledger",
         *(f"test_scenario[{name}]" for name in (
             "transient_faults", "crash_during_call", "crash_after_commit", "random_kills",
             "duplicates_in_input", "permanent_and_invalid", "backfill_degraded", "bad_batch_input", "large_batch"))}
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS = {"report agrees with ledger"}
MESSAGE = r"skipped \+ recovered: report says 0 \+ \d+.*\n?.*skipped-plus-recovered"
