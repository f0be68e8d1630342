"""The ledger: one line per event, readable after a kill, shared safely with the parent."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from batchlab.ledger import Ev, Ledger, append_event, encode_event, read_events


class TestLedger:
    def test_events_carry_kind_time_pass_and_fields(self, tmp_path: Path) -> None:
        with Ledger(tmp_path / "l.jsonl", pass_no=3, clock=lambda: 12.5) as ledger:
            ledger.emit("call_start", doc_id="d1", chunk=0)
        (event,) = read_events(tmp_path / "l.jsonl")
        assert event["ev"] == "call_start" and event["t"] == 12.5 and event["pass"] == 3 and event["doc_id"] == "d1"

    def test_a_torn_last_line_is_skipped_not_fatal(self, tmp_path: Path) -> None:
        path = tmp_path / "l.jsonl"
        with Ledger(path, pass_no=1) as ledger:
            ledger.emit("pass_start")
        with path.open("ab") as fh:
            fh.write(b'{"ev": "call_st')
        assert [e["ev"] for e in read_events(path)] == ["pass_start"]

    def test_long_fields_are_shortened(self, tmp_path: Path) -> None:
        with Ledger(tmp_path / "l.jsonl", pass_no=1) as ledger:
            ledger.emit("student_error", error="x" * 10_000)
        assert len(read_events(tmp_path / "l.jsonl")[0]["error"]) < 1000

    def test_a_line_is_the_bytes_the_json_encoder_wrote(self) -> None:
        """The fast line builder writes exactly what ``json`` wrote for the same event, whatever the field values."""
        encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
        values = ["", 'q"b\\s\n\t\x00\x1f', "中文 é 😀", "x" * 700, 0, -7, 10**30, 0.1 + 0.2, 1e300, math.nan, math.inf,
                  True, False, None, [1, "x" * 700, {"a": None}], {"k": [1.5, "é"]}, Ev.STATE, Path("/p")]
        for i, value in enumerate(values):
            for ev, t in ((Ev.CALL_OK, 1796527255.8887095), ("odd\"kind", 3)):
                fields = {"doc_id": f"d{i}", "value": value, "n": i}
                record = {"ev": ev, "t": t, "pass": 2, "pid": 41,
                          **{k: v[:600] + "..." if type(v) is str and len(v) > 600 else v for k, v in fields.items()}}
                assert encode_event(ev, t, 2, 41, fields) == (encoder.encode(record) + "\n").encode("utf-8")

    def test_a_field_named_like_the_envelope_replaces_it_as_before(self) -> None:
        """A field called ``t`` (the parent's own time, say) overrides the envelope's, in place, as a dict did."""
        line = encode_event("kill", 1.0, 1, 2, {"t": 5.5, "by": "parent"})
        assert line == b'{"ev":"kill","t":5.5,"pass":1,"pid":2,"by":"parent"}\n'

    def test_child_and_parent_appends_interleave_without_tearing(self, tmp_path: Path) -> None:
        path = tmp_path / "l.jsonl"
        code = textwrap.dedent(f"""
            import os, signal
            from batchlab.ledger import Ledger
            ledger = Ledger({str(path)!r}, pass_no=1)
            for i in range(3000):
                ledger.emit("call_start", i=i, pad="p" * 200)
            os.kill(os.getpid(), signal.SIGKILL)
        """)
        child = subprocess.Popen([sys.executable, "-c", code])
        for i in range(200):
            append_event(path, "kill", pass_no=1, i=i)
        assert child.wait() == -signal.SIGKILL
        events = read_events(path)
        assert sum(e["ev"] == "call_start" for e in events) == 3000
        assert sum(e["ev"] == "kill" for e in events) == 200


def test_a_tail_skipping_the_existing_lines_reads_only_newer_ones_and_a_torn_line_whole(tmp_path: Path) -> None:
    """skip_existing() passes the complete lines without parsing them; a line still being written is read once done."""
    from batchlab.ledger import LedgerTail

    path = tmp_path / "ledger.jsonl"
    for i in range(3000):  # several 64 KiB blocks
        append_event(path, "call_start", pass_no=1, i=i)
    with path.open("ab") as fh:
        fh.write(b'{"ev": "sink_put", "pass": 1, "t": 1.0, ')  # torn: its end comes later
    tail = LedgerTail(path)
    tail.skip_existing()
    assert tail.read_new() == []
    with path.open("ab") as fh:
        fh.write(b'"n": 7}\n')
    append_event(path, "pass_end", pass_no=2)
    assert [(e["ev"], e.get("n")) for e in tail.read_new()] == [("sink_put", 7), ("pass_end", None)]
    empty = LedgerTail(tmp_path / "none.jsonl")
    empty.skip_existing()
    assert empty.read_new() == []
