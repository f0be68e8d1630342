"""The front-ends read a batch as a stream: `batchlab validate`, the demo, chaos's granularity and the report.

Each is run on the same documents as JSON Lines and as a JSON array (the same answer), on a JSON Lines file with a
malformed line (one more rejected document, the rest unchanged), and under :func:`streamed_only`, which makes any
listing of the input fail: memory that does not grow with N is proven by the code path, not by timing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batchlab.batchstream import open_batch
from batchlab.cli import main
from batchlab.documents import ident_of, parse_document
from batchlab.examples import make_documents, write_documents
from batchlab.ledger import Ev
from batchlab.pipeline import chunk_text, clean_text
from batchlab.teach.chaos_result import RESTARTS_FOR_GRANULARITY, _granularity
from batchlab.teach.report.views import rejected_codes
from batchlab.testing import forbid_listing


@pytest.fixture
def streamed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of a batch must stream (:func:`batchlab.testing.forbid_listing`): a stream fails once more than 3
    of the documents it handed out are alive, and the list-based readers (load_batch, Inventory.of, ``stream[i]``)
    fail at once."""
    forbid_listing(monkeypatch.setattr)


def docs(n: int = 80, **kw: Any) -> list[dict[str, Any]]:
    return make_documents(n, seed=9, min_bytes=60, max_bytes=400, **{"duplicates": 4, "invalid": 3, **kw})


def both(tmp_path: Path, documents: list[dict[str, Any]]) -> tuple[Path, Path]:
    """The documents as JSON Lines (with a header) and as the JSON object a teacher writes (same batch id)."""
    lines, obj = tmp_path / "b.jsonl", tmp_path / "b.json"
    write_documents(lines, documents, format="jsonl", batch_id="b-7")
    write_documents(obj, documents, format="json", batch_id="b-7")
    return lines, obj


def with_broken_line(tmp_path: Path, documents: list[dict[str, Any]], at: int = 5) -> Path:
    path = tmp_path / "broken.jsonl"
    write_documents(path, documents, format="jsonl")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:at] + ['{"id": "cut", "content": "no end\n'] + lines[at:]), encoding="utf-8")
    return path


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["validate", str(path)]) == 0
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return summary


def test_validate_gives_the_same_summary_for_jsonl_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           streamed_only: None) -> None:
    """`batchlab validate` streams: a JSON Lines file and a JSON file of the same batch summarize the same."""
    lines, obj = both(tmp_path, docs())
    a, b = validate(lines, capsys), validate(obj, capsys)
    assert {k: v for k, v in a.items() if k != "input"} == {k: v for k, v in b.items() if k != "input"}
    assert a["batch_id"] == "b-7" and a["documents"] == 80 and a["unique"] < a["valid"] < a["documents"]


def test_validate_counts_a_malformed_line_as_one_invalid_document(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   streamed_only: None) -> None:
    """A line that is not JSON is one invalid document (invalid_json); the other documents count as before."""
    clean = docs(40, duplicates=0, invalid=0, empty=0)
    good = tmp_path / "good.jsonl"
    write_documents(good, clean, format="jsonl")
    before, after = validate(good, capsys), validate(with_broken_line(tmp_path, clean), capsys)
    assert after["documents"] == before["documents"] + 1 and after["unique"] == before["unique"]
    assert after["invalid"] == {"invalid_json": 1} and before["invalid"] == {}


def test_validate_refuses_a_bad_batch_with_the_unified_error_naming_the_line(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]
                                                                             ) -> None:
    """A whole-batch error still comes as the unified error with the line and byte offset (exit 2)."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "a", "content": "x"}\n{"id": "b", "content": "\xff"}\n')
    assert main(["validate", str(path)]) == 2
    error = json.loads(capsys.readouterr().out)["error"]  # the CLI prints the unified error on stdout
    assert error["code"] == "invalid_utf8" and error["details"]["line"] == 2 and error["details"]["byte_offset"] > 0


def test_the_reports_rejected_codes_stream_and_agree_across_formats(tmp_path: Path, streamed_only: None) -> None:
    """The report's input-side reasons are the same for JSON Lines and JSON, and a malformed line adds invalid_json."""
    documents = docs()
    lines, obj = both(tmp_path, documents)
    codes = rejected_codes({"input": str(lines)})
    assert codes == rejected_codes({"input": str(obj)}) and codes
    assert rejected_codes({"input": str(with_broken_line(tmp_path, documents))}) == codes | {"invalid_json"}


def test_chaos_granularity_reads_the_input_as_a_stream(tmp_path: Path, streamed_only: None) -> None:
    """The granularity effect names a stuck document's chunk count from a stream, the same for both formats."""
    documents = docs(duplicates=0, invalid=0, empty=0)
    stuck = parse_document(documents[7])
    ident = ident_of(stuck)
    events = [{"ev": Ev.CALL_START, "pass": p, "ident": ident, "chunk": c}
              for p in range(1, RESTARTS_FOR_GRANULARITY + 1) for c in (0, 1)]
    lines, obj = both(tmp_path, documents)
    got = _granularity(events, set(range(1, RESTARTS_FOR_GRANULARITY + 1)), open_batch(lines), 80)
    assert got == _granularity(events, set(range(1, RESTARTS_FOR_GRANULARITY + 1)), open_batch(obj), 80)
    assert got is not None and got["examples"][0]["chunks"] == len(chunk_text(clean_text(stuck.content)))


@pytest.mark.slow
def test_the_demo_places_its_crash_the_same_from_jsonl_and_json(tmp_path: Path, streamed_only: None) -> None:
    """The demo counts its input's planned calls from a stream: same crash, same figures, for both formats."""
    from batchlab.teach.demo import run_demo

    lines, obj = both(tmp_path, docs(30))
    results = [run_demo(input_path=p, run_dir=tmp_path / f"run-{p.suffix[1:]}", latency_ms=0, fault_rate=0)
               for p in (lines, obj)]
    a, b = (r.metrics for r in results)
    assert results[0].crash == results[1].crash and results[0].crash.at > 1
    assert results[0].settings == results[1].settings
    assert (a.total, a.unique, a.rejected, a.completion_rate) == (b.total, b.unique, b.rejected, 1.0)
