"""Metrics computed from ledger and sink, by DESIGN.md section 5's definitions."""

from __future__ import annotations

from typing import Any

import pytest

from batchlab.documents import ident_of, parse_document
from batchlab.metrics import compute_metrics, format_table
from batchlab.pipeline import MODE_DEGRADED, MODE_FULL, expected_output
from batchlab.sink import SinkRecord

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
