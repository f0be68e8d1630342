"""How a pass ended has one vocabulary (``batchlab.ledger.PassEnd``) and named exit codes (issue 15, item 2)."""

from __future__ import annotations

import json

from batchlab.ledger import PassEnd
from batchlab.metrics import compute_metrics
from batchlab.worker import WorkerExit


class TestWorkerExit:
    def test_the_exit_codes_keep_their_numbers(self) -> None:
        """The worker's protocol with the runner and the grader is unchanged: 0, 2, 3, 4, 5."""
        assert {e.name: int(e) for e in WorkerExit} == {"OK": 0, "INPUT": 2, "IMPORT": 3, "RAISED": 4, "STOPPED": 5}


class TestPassEnd:
    def test_a_pass_end_is_written_as_its_plain_string(self) -> None:
        """Reports and results files show the same strings as before: a PassEnd serialises as its value."""
        assert (json.dumps([PassEnd.KILLED]), f"{PassEnd.OK}", PassEnd.DIED == "died") == ('["killed"]', "ok", True)

    def test_the_metrics_name_each_pass_with_a_pass_end(self) -> None:
        """A killed pass then a resumed one read as PassEnd.KILLED then PassEnd.OK."""
        events = [
            {"ev": "pass_start", "pass": 1, "t": 1.0}, {"ev": "kill", "pass": 1, "t": 2.0, "kind": "random"},
            {"ev": "pass_start", "pass": 2, "t": 3.0}, {"ev": "pass_end", "pass": 2, "t": 4.0, "report": {}},
        ]
        passes = compute_metrics([], events, [], []).passes
        assert [(type(p.exit), p.exit) for p in passes] == [(PassEnd, PassEnd.KILLED), (PassEnd, PassEnd.OK)]

    def test_the_report_names_every_way_a_pass_ends(self) -> None:
        """The report's Chinese names cover exactly the PassEnd values, no invented state."""
        from batchlab.teach.report.markdown import _EXIT_NAMES

        assert set(_EXIT_NAMES) == set(PassEnd)
