"""The SQLite sink: idempotent upserts, an execution record, and durability against SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from batchlab.documents import Document
from batchlab.faults import CrashPlan
from batchlab.ledger import Ledger, read_events
from batchlab.sink import SqliteSink, read_outputs, read_puts

DOC = Document(id="doc-1", content="Some text.", source="wiki")


class TestSqliteSink:
    def test_put_then_get_round_trips(self, tmp_path: Path) -> None:
        sink = SqliteSink(tmp_path / "s.sqlite")
        sink.put("k1", DOC, ["a", "b"], [[0.1], [0.2]], mode="full")
        rec = sink.get("k1")
        assert rec is not None and rec.chunks == ["a", "b"] and rec.vectors == [[0.1], [0.2]] and rec.mode == "full"
        assert "k1" in sink and sink.keys() == {"k1"} and sink.get("nope") is None

    def test_put_is_an_upsert_that_counts_writes(self, tmp_path: Path) -> None:
        sink = SqliteSink(tmp_path / "s.sqlite")
        assert sink.put("k1", DOC, ["a"], [[0.1]]) == 1
        assert sink.put("k1", DOC, ["b"], [[0.2]]) == 2
        assert len(read_outputs(tmp_path / "s.sqlite")) == 1
        assert [p["key"] for p in read_puts(tmp_path / "s.sqlite")] == ["k1", "k1"]

    def test_a_full_put_over_a_degraded_output_is_an_upgrade_not_a_redo(self, tmp_path: Path) -> None:
        """后续标记待补: the full output replaces the degraded one, marked upgrade, and ``writes`` does not grow."""
        path = tmp_path / "s.sqlite"
        with Ledger(tmp_path / "ledger.jsonl", pass_no=2) as ledger:
            sink = SqliteSink(path, ledger=ledger)
            assert sink.put("k1", DOC, ["d"], [[0.0]], mode="degraded") == 1
            assert sink.put("k1", DOC, ["f"], [[0.5]], mode="full") == 1
            rec = sink.get("k1")
            assert rec is not None and rec.mode == "full" and rec.chunks == ["f"]
            assert sink.put("k1", DOC, ["f"], [[0.5]], mode="full") == 2  # once full, a redo is a duplicate again
        assert [p["upgrade"] for p in read_puts(path)] == [False, True, False]
        assert [e["upgrade"] for e in read_events(tmp_path / "ledger.jsonl")] == [False, True, False]

    def test_a_degraded_put_over_a_degraded_output_is_a_redo(self, tmp_path: Path) -> None:
        """Writing the degraded output again is a redo: writes grows, no upgrade."""
        sink = SqliteSink(tmp_path / "s.sqlite")
        assert sink.put("k1", DOC, ["d"], [[0.0]], mode="degraded") == 1
        assert sink.put("k1", DOC, ["d"], [[0.0]], mode="degraded") == 2
        assert [p["upgrade"] for p in read_puts(tmp_path / "s.sqlite")] == [False, False]

    def test_a_sink_written_before_upgrades_existed_opens_and_reads(self, tmp_path: Path) -> None:
        """A run directory of an older kit: its ``puts`` table gains the column, its puts read as no upgrade."""
        import sqlite3

        path = tmp_path / "old.sqlite"
        conn = sqlite3.connect(path)
        conn.executescript("CREATE TABLE puts (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, doc_id TEXT "
                           "NOT NULL, ident TEXT NOT NULL, mode TEXT NOT NULL, pass INTEGER NOT NULL, t REAL NOT NULL);"
                           "INSERT INTO puts (key, doc_id, ident, mode, pass, t) VALUES ('k', 'd', 'i', 'full', 1, 0);")
        conn.commit()
        conn.close()
        assert read_puts(path) == [{"seq": 1, "key": "k", "doc_id": "d", "ident": "i", "mode": "full", "pass": 1,
                                    "t": 0.0, "upgrade": False}]

    def test_chunks_and_vectors_must_pair_up(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError):
            SqliteSink(tmp_path / "s.sqlite").put("k", DOC, ["a", "b"], [[0.1]])

    def test_records_each_put_in_the_ledger(self, tmp_path: Path) -> None:
        sink = SqliteSink(tmp_path / "s.sqlite", ledger=Ledger(tmp_path / "l.jsonl", pass_no=2), pass_no=2)
        sink.put("k1", DOC, ["a"], [[0.1]], mode="degraded")
        (event,) = read_events(tmp_path / "l.jsonl")
        assert (event["ev"], event["key"], event["mode"], event["pass"]) == ("sink_put", "k1", "degraded", 2)

    def test_crash_after_the_kth_commit_fires_after_the_row_is_committed(self, tmp_path: Path) -> None:
        seen: list[bool] = []
        sink = SqliteSink(tmp_path / "s.sqlite", crash=CrashPlan(kind="after_commit", at=2),
                          on_crash=lambda: seen.append("k2" in {r.key for r in read_outputs(tmp_path / "s.sqlite")}))
        sink.put("k1", DOC, ["a"], [[0.1]])
        sink.put("k2", DOC, ["a"], [[0.1]])
        assert seen == [True]

    def test_a_committed_put_survives_a_real_sigkill(self, tmp_path: Path) -> None:
        code = textwrap.dedent(f"""
            import os, signal
            from batchlab.documents import Document
            from batchlab.sink import SqliteSink
            sink = SqliteSink({str(tmp_path / "s.sqlite")!r})
            for i in range(50):
                sink.put(f"k{{i}}", Document(id=f"d{{i}}", content="t"), ["t"], [[0.5]])
            os.kill(os.getpid(), signal.SIGKILL)
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
        assert proc.returncode == -signal.SIGKILL
        assert len(read_outputs(tmp_path / "s.sqlite")) == 50
        assert len(read_puts(tmp_path / "s.sqlite")) == 50
        assert os.path.exists(tmp_path / "s.sqlite")
