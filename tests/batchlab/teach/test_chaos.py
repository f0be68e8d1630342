"""``batchlab chaos``: a batch under random SIGKILLs of the command and its worker (issue 14)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from batchlab.documents import ident_of, parse_document
from batchlab.examples import make_documents, write_input
from batchlab.teach.chaos import run_chaos
from batchlab.teach.chaos_result import RESTARTS_FOR_GRANULARITY, _granularity, integrity

pytestmark = pytest.mark.slow


def live_workers(run_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if b"batchlab.worker" in argv and str(run_dir).encode() in argv and state != "Z":
                found.append(int(entry.name))
    return found


class TestChaos:
    def test_kills_check_integrity_and_end_with_nothing_lost_or_doubled(self, tmp_path: Path) -> None:
        source = write_input(tmp_path / "input.json", make_documents(80, seed=9, min_bytes=500, max_bytes=4000))
        lines: list[str] = []
        result = run_chaos(run_dir=tmp_path / "run", input_path=source, kills=3, min_s=0.05, max_s=0.4,
                           extra_args=["--latency-ms", "20"], on_line=lines.append)
        assert len(result.kills) == 3 or result.finished_early
        assert all(k.integrity == {"sink.sqlite": "ok", **{n: "ok" for n in k.integrity}} for k in result.kills)
        assert "sink.sqlite" in result.final_integrity
        assert result.duplicates == 0 and result.lost == [] and result.integrity_failures == 0 and result.ok
        assert result.final_outcome.startswith("exit 0")
        text = "\n".join(result.lines())
        for phrase in ("kills: ", "commits between kills", "integrity: ", "duplicates: 0", "lost: 0",
                       "completion rate", "result: OK"):
            assert phrase in text
        assert len(lines) == 1 + len(result.kills)  # the header, then one line per kill, live
        assert live_workers(tmp_path / "run") == []
        json.dumps(result.to_dict())

    def test_the_command_prints_json_and_refuses_bad_input(self, tmp_path: Path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text("{", encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "batchlab", "chaos", str(tmp_path / "run"), "--input", str(bad),
                               "--kills", "1"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and json.loads(proc.stdout)["error"]["code"] == "invalid_json"
        assert not (tmp_path / "run").exists()


class TestGranularity:
    def test_a_document_restarted_from_chunk_0_in_several_killed_passes_is_named(self) -> None:
        big = {"id": "big", "content": " ".join(f"Sentence number {i} of a long handbook." for i in range(400))}
        small = {"id": "small", "content": "Short."}
        idents = {d["id"]: ident_of(parse_document(d)) for d in (big, small)}
        events = []
        for pass_no in range(1, RESTARTS_FOR_GRANULARITY + 2):
            events += [{"ev": "call_start", "pass": pass_no, "ident": idents["big"], "chunk": c} for c in range(5)]
        events += [{"ev": "call_start", "pass": 1, "ident": idents["small"], "chunk": 0},
                   {"ev": "sink_put", "pass": 1, "ident": idents["small"]}]
        found = _granularity(events, set(range(1, RESTARTS_FOR_GRANULARITY + 2)), [big, small], unique=2)
        assert found is not None
        assert found["documents"] == 1 and found["max_restarts"] == RESTARTS_FOR_GRANULARITY + 1
        assert found["furthest_chunk"] == 4 and found["largest_chunks"] > 10 and found["committed_at_stall"] == 1

    def test_documents_that_finish_between_kills_are_not_the_effect(self) -> None:
        doc = {"id": "d", "content": "Some text."}
        ident = ident_of(parse_document(doc))
        events = [{"ev": "call_start", "pass": p, "ident": ident, "chunk": 0} for p in (1, 2, 3)]
        events.append({"ev": "sink_put", "pass": 3, "ident": ident})
        assert _granularity(events, {1, 2, 3}, [doc], unique=1) is None


def test_integrity_checks_every_sqlite_file_of_the_run(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "state").mkdir()
    for name in ("sink.sqlite", "state/checkpoint.db"):
        sqlite3.connect(tmp_path / name).execute("CREATE TABLE t (x)").connection.commit()
    (tmp_path / "state" / "notes.json").write_text("{}")
    assert integrity(tmp_path) == {"sink.sqlite": "ok", os.path.join("state", "checkpoint.db"): "ok"}
