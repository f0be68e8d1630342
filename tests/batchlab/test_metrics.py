"""Metrics computed from ledger and sink, by docs/design.md, Metrics's definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchlab.documents import ident_of, parse_document
from batchlab.metric_table import REPORTED
from batchlab.metrics import compute_metrics, format_table, metric_rows
from batchlab.pipeline import MODE_DEGRADED, MODE_FULL, expected_output
from batchlab.sink import SinkRecord
from batchlab.thresholds import THRESHOLDS

RAW = [
    {"id": "a", "content": "Alpha text."},
    {"id": "b", "content": "Beta text."},
    {"id": " B", "content": "Beta  text."},  # duplicate of b
    {"id": "c", "content": "Gamma text."},
    {"content": "no id"},  # rejected
]


def record(raw: dict[str, Any], mode: str = MODE_FULL, *, corrupt: bool = False) -> SinkRecord:
    doc = parse_document(raw)
    out = expected_output(doc, mode)
    chunks = out["chunks"] + (["extra"] if corrupt else [])
    vectors = out["vectors"] + ([[0.0]] if corrupt else [])
    return SinkRecord(key=f"k-{doc.id}", doc_id=doc.id, ident=ident_of(doc), mode=mode, chunks=chunks,
                      vectors=vectors, committed_at=0.0, writes=1)


def put(raw: dict[str, Any], pass_no: int, t: float) -> dict[str, Any]:
    return {"key": "k", "doc_id": raw["id"], "ident": ident_of(parse_document(raw)), "mode": "full",
            "pass": pass_no, "t": t}


def ev(ev_kind: str, pass_no: int, t: float, raw: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    event = {"ev": ev_kind, "pass": pass_no, "t": t, **fields}
    if raw is not None:
        event.update(doc_id=raw["id"], ident=ident_of(parse_document(raw)))
    return event


class TestRates:
    def test_a_clean_complete_run(self) -> None:
        outputs = [record(RAW[0]), record(RAW[1]), record(RAW[3], MODE_DEGRADED)]
        puts = [put(RAW[0], 1, 1.0), put(RAW[1], 1, 2.0), put(RAW[3], 1, 3.0)]
        m = compute_metrics(RAW, [], outputs, puts)
        assert (m.total, m.unique, m.rejected, m.completed, m.committed_degraded) == (5, 3, 1, 3, 1)
        assert m.completion_rate == 1.0 and m.duplicate_rate == 0.0
        assert m.fail_rate == pytest.approx(1 / 5)

    def test_a_wrong_output_does_not_count_as_completed(self) -> None:
        m = compute_metrics(RAW, [], [record(RAW[0], corrupt=True), record(RAW[1]), record(RAW[3])], [])
        assert m.completed == 2 and m.wrong_output == ["a"]
        assert m.fail_rate == pytest.approx((1 + 1) / 5)

    def test_missing_documents_are_listed_by_id(self) -> None:
        m = compute_metrics(RAW, [], [record(RAW[0])], [])
        assert m.missing == ["b", "c"] and m.completion_rate == pytest.approx(1 / 3)

    def test_executions_of_one_identity_beyond_the_first_are_duplicates(self) -> None:
        puts = [put(RAW[0], 1, 1.0), put(RAW[1], 1, 2.0), put(RAW[2], 2, 5.0), put(RAW[0], 2, 6.0)]
        m = compute_metrics(RAW, [], [record(RAW[0]), record(RAW[1])], puts)
        assert m.duplicate_rate == pytest.approx(2 / 3)
        assert sorted(d.describe() for d in m.duplicates)[0] == "a executed 2 times (pass 1, pass 2)"


class TestTimings:
    def events(self) -> list[dict[str, Any]]:
        return [
            ev("pass_start", 1, 100.0, t0=99.5),
            ev("call_start", 1, 100.2, RAW[0], attempt=1, inflight=1, doc_inflight=1),
            ev("call_fail", 1, 100.3, RAW[0], attempt=1, error="timeout"),
            ev("call_start", 1, 100.5, RAW[0], attempt=2, inflight=2, doc_inflight=1),
            ev("sink_put", 1, 101.0, RAW[0]),
            ev("crash", 1, 101.1, kind="during_call", at=3),
            ev("pass_start", 2, 110.0, t0=109.0),
            ev("call_start", 2, 112.0, RAW[1], attempt=1, inflight=1, doc_inflight=1),
            ev("sink_put", 2, 112.5, RAW[1]),
            ev("call_start", 2, 112.6, RAW[3], attempt=1, inflight=1, doc_inflight=1),
            ev("sink_put", 2, 113.0, RAW[3]),
            ev("pass_end", 2, 113.0, report={"executed": 2}),
        ]

    def test_resume_time_runs_from_process_start_to_the_first_call_on_unfinished_work(self) -> None:
        puts = [put(RAW[0], 1, 101.0), put(RAW[1], 2, 112.5), put(RAW[3], 2, 113.0)]
        m = compute_metrics(RAW, self.events(), [], puts)
        assert m.passes[1].resume_time_s == pytest.approx(3.0)
        assert m.resume_time_s == pytest.approx(3.0)

    def test_latency_counts_from_first_dispatch_to_commit_retries_included(self) -> None:
        m = compute_metrics(RAW, self.events(), [], [])
        assert m.passes[0].latencies_s == [pytest.approx(0.8)]
        assert m.latency_p50_s == pytest.approx(0.5)  # 0.8, 0.5 and 0.4 over both passes

    def test_throughput_retries_crashes_and_concurrency_come_from_the_ledger(self) -> None:
        m = compute_metrics(RAW, self.events(), [], [])
        assert m.passes[1].throughput_docs_per_min == pytest.approx(60 * 2 / 4.0)
        assert m.retries == 1 and m.failure_reasons == {"missing_id": 1, "timeout": 1}
        assert [c["ev"] for c in m.crashes] == ["crash"] and m.max_inflight == 2
        assert m.passes[0].exit == "killed" and m.passes[1].exit == "ok"

    def test_a_resumed_pass_that_never_called_the_service_has_no_resume_time(self) -> None:
        events = [ev("pass_start", 1, 1.0, t0=1.0), ev("pass_start", 2, 5.0, t0=5.0),
                  ev("student_error", 2, 5.5, error="NotImplementedError")]
        m = compute_metrics(RAW, events, [], [])
        assert m.resume_time_s is None and not m.meets_thresholds()

    def test_the_table_shows_each_threshold_and_its_verdict(self) -> None:
        table = format_table(compute_metrics(RAW, self.events(), [], []))
        assert "completion rate" in table and ">= 99 %" in table and "FAIL" in table and "latency p95" in table

    def test_the_rows_are_the_thresholds_judged_then_the_reported_figures(self) -> None:
        """One builder for the demo's text, the dashboard's HTML and the report: thresholds first, then reported."""
        rows = metric_rows(compute_metrics(RAW, self.events(), [], []))
        assert [r.metric for r in rows] == [*THRESHOLDS, *(name for name, _ in REPORTED)]
        assert [r.judged for r in rows] == [True] * len(THRESHOLDS) + [False] * len(REPORTED)

    def test_the_text_table_renders_the_rows_in_their_order(self) -> None:
        """Each line of the text table is one row: its label, its value as text, its bound."""
        metrics = compute_metrics(RAW, self.events(), [], [])
        lines = format_table(metrics).splitlines()[2:]
        assert [(r.label, r.text, r.bound) for r in metric_rows(metrics)] == [
            (r.label, r.text, r.bound) for r, line in zip(metric_rows(metrics), lines, strict=True)
            if line.startswith(r.label) and r.text in line and r.bound in line]


# -- a run directory, whatever it holds (issue 14) ------------------------------------------------------

def _sqlite_without_tables(run: Path) -> None:
    import sqlite3

    (run / "sink.sqlite").unlink()
    sqlite3.connect(run / "sink.sqlite").close()


def _bad_chunks(run: Path) -> None:
    import sqlite3

    conn = sqlite3.connect(run / "sink.sqlite")
    conn.execute("UPDATE outputs SET chunks = '{not json'")
    conn.commit()
    conn.close()


def _append(run: Path, blob: bytes) -> None:
    with (run / "ledger.jsonl").open("ab") as fh:
        fh.write(blob)


DAMAGES: dict[str, Any] = {
    "no spec": lambda run: (run / "spec.json").unlink(),
    "empty spec": lambda run: (run / "spec.json").write_text(""),
    "spec not json": lambda run: (run / "spec.json").write_text("{"),
    "spec a list": lambda run: (run / "spec.json").write_text("[]"),
    "spec input a number": lambda run: (run / "spec.json").write_text('{"input": 3}'),
    "spec deeply nested": lambda run: (run / "spec.json").write_text("[" * 100_000 + "]" * 100_000),
    "input gone": lambda run: (run / "spec.json").write_text(json.dumps({"input": str(run / "gone.json")})),
    "input broken": lambda run: Path(json.loads((run / "spec.json").read_text())["input"]).write_text("{"),
    "ledger garbage": lambda run: _append(run, b"\x00\xff garbage\n{\"ev\": 1}\n[1, 2]\n"),
    "ledger odd fields": lambda run: _append(
        run, b'{"ev": "sink_put", "t": "soon", "pass": 1}\n{"ev": "call_start", "t": NaN, "pass": 1}\n'
             b'{"ev": "call_start", "t": 1.0, "pass": "x", "ident": 5}\n'
             b'{"ev": "kill", "t": 2.0, "pass": 99, "delay": Infinity}\n'
             b'{"ev": "pass_start", "t": 3.0, "pass": 98, "t0": "never"}\n'),
    "ledger surrogates": lambda run: _append(run, b'{"ev": "crash", "t": 5.0, "pass": 97, "doc_id": "\\ud800"}\n'),
    "ledger deep line": lambda run: _append(run, b"[" * 100_000 + b"]" * 100_000 + b"\n"),
    "ledger a directory": lambda run: ((run / "ledger.jsonl").unlink(), (run / "ledger.jsonl").mkdir()),
    "sink random bytes": lambda run: (run / "sink.sqlite").write_bytes(b"not a database" * 100),
    "sink empty file": lambda run: (run / "sink.sqlite").write_bytes(b""),
    "sink a directory": lambda run: ((run / "sink.sqlite").unlink(), (run / "sink.sqlite").mkdir()),
    "sink without tables": _sqlite_without_tables,
    "sink bad chunks": _bad_chunks,
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the reference on 12 documents."""
    from batchlab.examples import make_documents, write_input
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, run_passes

    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    base = tmp_path_factory.mktemp("finished")
    source = write_input(base / "input.json", make_documents(12, seed=2, min_bytes=100, max_bytes=600))
    run_passes(RunSpec(impl=solution_module(), input=source, run_dir=base / "run"), [])
    return base


class TestAnyRunDirectory:
    @pytest.mark.parametrize("damage", sorted(DAMAGES))
    def test_metrics_and_report_answer_or_refuse_never_crash(
            self, damage: str, finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        import shutil

        from batchlab.cli import main

        base = tmp_path / "copy"
        shutil.copytree(finished_run, base)
        run = base / "run"
        spec = json.loads((run / "spec.json").read_text())
        spec["input"] = str(base / "input.json")
        (run / "spec.json").write_text(json.dumps(spec))
        DAMAGES[damage](run)
        for argv in (["metrics", str(run), "--json"], ["metrics", str(run)],
                     ["report", str(run), "--out", str(tmp_path / "report"), "--lang", "en"]):
            code = main(argv)
            out = capsys.readouterr().out
            assert code in (0, 1, 2), argv
            if argv[-1] == "--json" or code == 2:
                payload = json.loads(out[out.index("{"):] if code == 0 else out,
                                     parse_constant=lambda c: pytest.fail(f"{c} in {argv}"))
                if code == 2:
                    assert set(payload["error"]) == {"code", "message", "details", "hints"}, argv
