"""Synthetic inputs at any size: documents generated one at a time and streamed to .json or .jsonl."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import pytest
from batchlab.cli import main
from batchlab.documents import Document, ident_of, load_batch, try_parse
from batchlab.examples import iter_documents, write_documents
from batchlab.metrics import metrics_for_run


def test_streamed_documents_have_the_lessons_mix() -> None:
    """About 2 % re-sent duplicates and 1 % invalid entries (one empty), as make_documents gives."""
    docs = list(iter_documents(5000, seed=2, max_bytes=500))
    parsed = [try_parse(raw) for raw in docs]
    valid = [p for p in parsed if isinstance(p, Document)]
    assert len(docs) == 5000 and len(parsed) - len(valid) == 51
    assert len(valid) - len({ident_of(d) for d in valid}) == 100
    assert {d.metadata["lang"] for d in valid} == {"zh", "en"}
    assert all(len(d.content.encode("utf-8")) <= 500 for d in valid)


def test_the_same_seed_gives_the_same_documents_and_another_seed_others() -> None:
    first = list(islice(iter_documents(1000, seed=4), 50))
    assert first == list(islice(iter_documents(1000, seed=4), 50))
    assert first != list(islice(iter_documents(1000, seed=5), 50))


def test_json_and_jsonl_files_of_the_same_documents_load_the_same(tmp_path: Path) -> None:
    """``write_documents`` streams either format; both load to the same batch."""
    a, b = tmp_path / "in.json", tmp_path / "in.jsonl"
    assert write_documents(a, iter_documents(300, seed=1, max_bytes=800), batch_id="b-7") == 300
    assert write_documents(b, iter_documents(300, seed=1, max_bytes=800), batch_id="b-7", format="jsonl") == 300
    json_batch, jsonl_batch = load_batch(a), load_batch(b)
    assert json_batch.documents == jsonl_batch.documents and json_batch.batch_id == jsonl_batch.batch_id == "b-7"
    assert json.loads(b.read_text(encoding="utf-8").splitlines()[0]) == {"header": True, "batch_id": "b-7"}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed


class TestMakeInput:
    def test_jsonl_is_a_header_then_a_document_per_line(self, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "in.jsonl"
        assert main(["make-input", "--docs", "500", "--out", str(out), "--max-bytes", "600"]) == 0
        assert json.loads(capsys.readouterr().out)["format"] == "jsonl"  # from the suffix
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 501 and json.loads(lines[0])["header"] is True
        assert len(load_batch(out)) == 500

    def test_the_format_flag_wins_over_the_suffix_and_the_seed_fixes_the_bytes(
            self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        a, b = tmp_path / "a.txt", tmp_path / "b.txt"
        for out in (a, b):
            assert main(["make-input", "--docs", "400", "--seed", "3", "--format", "json", "--out", str(out)]) == 0
        assert a.read_bytes() == b.read_bytes()
        assert len(json.loads(a.read_text(encoding="utf-8"))["documents"]) == 400


@pytest.mark.slow
def test_a_run_on_jsonl_gives_the_metrics_of_the_same_batch_as_json(reference_impl: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The worker, the runner and the metrics take a .jsonl input with no change of theirs."""
    figures = {}
    for fmt in ("json", "jsonl"):
        source = tmp_path / f"in.{fmt}"
        write_documents(source, iter_documents(150, seed=6, max_bytes=1500), format=fmt)
        run = tmp_path / f"run-{fmt}"
        assert main(["run", "--input", str(source), "--run-dir", str(run), "--impl", str(reference_impl),
                     "--latency-ms", "1", "--fault-rate", "0"]) == 0
        m = metrics_for_run(run)
        figures[fmt] = (m.total, m.unique, m.rejected, m.completed, len(m.duplicates), m.failure_reasons)
    assert figures["json"] == figures["jsonl"]
    assert figures["json"][3] == figures["json"][1]  # every unique document completed
