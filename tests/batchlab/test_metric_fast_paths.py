"""The metric fold's fast paths give what the plain paths give: ledger ticks, outputs compared as texts, blocks."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from batchlab import ledger_scan
from batchlab.contract import BatchConfig
from batchlab.docmodel import Document, ident_of, ident_of_normalized
from batchlab.examples import make_documents, write_input
from batchlab.faults import CrashPlan, FaultPlan
from batchlab.fold_store import FoldStore
from batchlab.ledger import encode_event
from batchlab.ledger_scan import read_ledger, scan_ledger
from batchlab.metric_fold import fold_ledger
from batchlab.metric_sinks import FileSink, ListSink, SinkDamage
from batchlab.paths import solution_module
from batchlab.pipeline import (
    CHUNK_MAX_CHARS,
    MODE_DEGRADED,
    MODE_FULL,
    chunk_text,
    clean_text,
    expected_json,
    expected_output,
)
from batchlab.rundir import RunDir
from batchlab.runner import RunSpec, run_passes
from batchlab.service import LatencyModel
from batchlab.sink import SCHEMA, SinkRecord

_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])")


def _chunk_loop(text: str, max_chars: int = CHUNK_MAX_CHARS) -> list[str]:
    """chunk_text as it was before its one-chunk shortcut (the oracle of the shortcut)."""
    chunks: list[str] = []
    current = ""
    for piece in _SENTENCE_END.split(text):
        if not piece.strip():
            continue
        if len(current) + len(piece) <= max_chars:
            current += piece
            continue
        if current.strip():
            chunks.append(current.strip())
        current = piece.lstrip()
        while len(current) > max_chars:
            chunks.append(current[:max_chars].strip())
            current = current[max_chars:].lstrip()
    if current.strip():
        chunks.append(current.strip())
    return [c for c in chunks if c]


def _texts(n: int, seed: int = 3) -> list[str]:
    """Texts of every shape the oracle meets: sentences, blanks, quotes, escapes, CJK, long and empty."""
    rng = random.Random(seed)
    alphabet = list("ab .!?。！？；;") + [" ", "\t", "\n", "\u3000", '"', "\\", "\x01", "é", "你", "\u2028"]
    return [("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) * rng.choice([1, 1, 3, 20]))
            for _ in range(n)]


def test_the_one_chunk_shortcut_chunks_as_the_loop() -> None:
    """A text no longer than the limit gives the loop's chunks, whitespace and empty pieces included."""
    for text in _texts(4000):
        for limit in (1, 5, 30, CHUNK_MAX_CHARS):
            assert chunk_text(text, limit) == _chunk_loop(text, limit), (text, limit)


def test_expected_json_is_the_oracles_output_as_json() -> None:
    """The oracle's chunks and vectors as texts equal json.dumps of expected_output, in both modes."""
    for text in _texts(600, seed=5):
        doc = Document(id="d", content=text or "x")
        for mode in (MODE_FULL, MODE_DEGRADED):
            want = expected_output(doc, mode)
            assert expected_json(clean_text(doc.content), mode) == (
                json.dumps(want["chunks"], ensure_ascii=False), json.dumps(want["vectors"]))
    with pytest.raises(ValueError):
        expected_json("x", "other")


def test_the_identity_from_the_cleaned_text_is_ident_of() -> None:
    """ident_of_normalized with the cleaned content is ident_of."""
    for i, text in enumerate(_texts(300, seed=9)):
        doc = Document(id=f" Doc-{i} ", content=text or "x", source="wiki")
        assert ident_of_normalized(doc, clean_text(doc.content)) == ident_of(doc)


def test_identities_added_by_block_are_those_added_one_by_one() -> None:
    """add_idents returns the positions of the identities new to the store, a repeat in the block included."""
    pairs = [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")]
    with FoldStore(on_disk=False) as one, FoldStore(on_disk=True) as block:
        expected = [i for i, (ident, doc_id) in enumerate(pairs) if one.add_ident(ident, doc_id)]
        assert block.add_idents(pairs) == expected == [0, 1, 3]
        assert block.add_idents([("c", "5"), ("d", "6"), ("d", "7")]) == [1]
        assert block.db.execute("SELECT ident, doc_id FROM idents ORDER BY ident").fetchall() == [
            ("a", "1"), ("b", "2"), ("c", "4"), ("d", "6")]


def test_the_hits_of_every_pass_in_one_walk_are_those_asked_pass_by_pass() -> None:
    """Random puts (repeats, upgrades, identities not in the input, passes without puts): the same hits per pass."""
    from batchlab.ledger import PassEnd
    from batchlab.ledger_views import PassMetrics
    from batchlab.metric_fold import complete_pass, hits_by_pass

    rng = random.Random(5)
    with FoldStore(on_disk=False) as store:
        store.add_idents([(f"i{k}", f"d{k}") for k in range(60)])
        store.db.executemany("INSERT INTO puts VALUES (?, ?, ?, ?)",
                             [(n, f"i{rng.randrange(80)}", rng.choice([1, 2, 2, 4, 5]), rng.random() < 0.2)
                              for n in range(150)])
        store.index_puts()
        passes = [1, 2, 3, 4, 5]
        asked = [complete_pass(PassMetrics(pass_no=p, started=0.0, ended=1.0, exit=PassEnd.OK), None, 60, store).hits for p in passes]
        assert hits_by_pass(passes, store) == asked
        assert min(asked[1:]) > 0 and asked[0] == 0


def _sink_with(path: Path, rows: list[tuple[str, str, str, str, str, str]]) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?, 1.0, 1)", rows)
    conn.commit()
    conn.close()
    return path


def test_outputs_compared_as_texts_get_the_verdicts_of_decoded_ones(tmp_path: Path) -> None:
    """Right, right but written otherwise, wrong, of an unknown mode: the file's verdicts are the lists'."""
    doc = Document(id="d1", content="First sentence. Second one! " * 30)
    ident, text = ident_of(doc), clean_text(doc.content)
    full, degraded = expected_output(doc, MODE_FULL), expected_output(doc, MODE_DEGRADED)
    ints = [[int(v) if v == 0 else v for v in vec] + [0] for vec in full["vectors"]]
    outputs = [
        ("k1", "d1", ident, MODE_FULL, json.dumps(full["chunks"], ensure_ascii=False), json.dumps(full["vectors"])),
        ("k2", "d1b", ident, MODE_FULL, json.dumps(full["chunks"]), json.dumps(full["vectors"], indent=1)),
        ("k3", "d1c", ident, MODE_DEGRADED, json.dumps(degraded["chunks"]), json.dumps(ints)),
        ("k4", "d1d", ident, "fancy", json.dumps(full["chunks"]), json.dumps(full["vectors"])),
        ("k5", "d1e", ident, MODE_DEGRADED, json.dumps(degraded["chunks"]), json.dumps(degraded["vectors"])),
    ]
    records = [SinkRecord(k, d, i, m, json.loads(c), json.loads(v), 1.0, 1) for k, d, i, m, c, v in outputs]
    sink = FileSink(_sink_with(tmp_path / "sink.sqlite", outputs))
    with FoldStore(on_disk=False) as store:
        sink.load_puts(store)
        got = sink.verdicts_of([(ident, doc, text), ("nobody", doc, text)])
    want = ListSink(records, []).verdicts_of([(ident, doc, text), ("nobody", doc, text)])
    assert got == want
    assert [ok for _, _, ok in got[0]] == [True, True, False, False, True] and got[1] == []


def test_a_damaged_output_still_raises_when_its_text_differs(tmp_path: Path) -> None:
    """An output whose JSON cannot be decoded is sink damage, whatever its mode."""
    doc = Document(id="d1", content="Short text.")
    for mode in (MODE_FULL, "fancy"):
        sink = FileSink(_sink_with(tmp_path / f"{mode}.sqlite", [("k", "d1", ident_of(doc), mode, "[", "[]")]))
        with FoldStore(on_disk=False) as store, pytest.raises(SinkDamage):
            sink.load_puts(store)
            sink.verdicts_of([(ident_of(doc), doc, clean_text(doc.content))])


def _line(ev: str, t: float, pass_no: int, **fields: Any) -> bytes:
    return encode_event(ev, t, pass_no, 77, fields)


def _odd_ledger(path: Path) -> Path:
    """A ledger with the worker's lines, lines written otherwise, and lines every reader must skip."""
    lines = [
        _line("state", 0.5, 1, doc_id="d0", state="processing", error=None, attempts=1),  # before the start
        _line("pass_start", 1.0, 1, t0=0.9),
        _line("state", 1.1, 1, doc_id="d1", state="processing", error=None, attempts=1),
        _line("call_start", 1.2, 1, doc_id="d1", ident="i1", chunk=0, attempt=1, call=1, inflight=1, doc_inflight=1),
        _line("call_ok", 1.3, 1, doc_id="d1", ident="i1", chunk=0, attempt=1, call=1, latency=0.1),
        _line("sink_put", 1.4, 1, doc_id="d1", ident="i1", key="k1", mode="full", n=1, writes=1, upgrade=False),
        b'{"ev":"state","t":9.5,"pass":1,"x":"a\\"b","y":1e5,"z":null}\n',  # flat fields, another order
        b'{"ev":"call_ok","t":1.6,"pass":1,"q":true,"ident":"i1","r":-0.5}\n',
        b'{"ev":"state","t":99.5,"pass":1,"t":"late"}\n',  # a repeated key overrides t: skipped
        b'{"ev":"call_ok","t":98.5,"pass":1,"ident":1}\n',  # ident not a string: skipped
        b'{"ev":"call_ok","t":97.5,"pass":1,"ident":"a","ident":1}\n',
        b'{"ev":"call_ok","t":96.5,"pass":1,"doc_id":"d"}\n',  # no ident: skipped
        b'{"ev":"state","t":95.5,"pass":1,"n":1' + b"0" * 5000 + b'}\n',  # too many digits for json: skipped
        b'{"ev":"state","t":94.5,"pass":1,"s":"\x01"}\n',  # a control character in a string: skipped
        b'{"ev":"state","t":1' + b"0" * 400 + b'.0,"pass":1}\n',  # t overflows to inf: skipped
        b'{"ev":"state","t":NaN,"pass":1}\n',
        '{"ev":"state","t":11.5,"pass":1,"doc_id":"文档"}\n'.encode(),  # not ASCII: decoded
        b'{"ev":"state","t":1.9,"pass":1} {"ev":"state"}\n', b"\n", b"[1, 2]\n", b"not json\n",
        b'{"ev":"state","t":2.5,"pass":0}\n',
        _line("state", 3.0, 2, doc_id="d2", state="processing", error=None, attempts=1),  # pass 2 has no start
        _line("call_start", 3.1, 2, doc_id="d2", ident="i2", chunk=0, attempt=2, call=2, inflight=2, doc_inflight=1),
        _line("call_ok", 2.9, 2, doc_id="d2", ident="i2", chunk=0, attempt=2, call=2, latency=0.1),
        _line("crash", 3.2, 2, kind="after_commit", at=1, doc_id="d2", ident="i2"),
        _line("state", 4.0, 3, doc_id="d3", state="processing", error=None, attempts=1),
        b'{"ev":"state","t":4.5,"pass":3,"doc_id":"torn',  # a torn last line
    ]
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("block", [ledger_scan.BLOCK_BYTES, 64, 300], ids=["default", "64 B", "300 B"])
def test_the_scanned_ledger_folds_as_the_decoded_one(tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """Every figure of every pass is the same whether the time-only lines are ticks or decoded events."""
    monkeypatch.setattr(ledger_scan, "BLOCK_BYTES", block)
    path = _odd_ledger(tmp_path / "ledger.jsonl")
    scanned = list(scan_ledger(path))
    assert any(type(x) is tuple for x in scanned)
    with FoldStore(on_disk=False) as a, FoldStore(on_disk=True, spill_keys=0) as b:
        for store in (a, b):
            store.index_puts()
        assert fold_ledger(scanned, a) == fold_ledger(read_ledger(path), b)


def test_the_scan_keeps_every_other_event_in_order(tmp_path: Path) -> None:
    """Besides ticks and work, the scan yields the decoded events in order, every one of another kind."""
    path = _odd_ledger(tmp_path / "ledger.jsonl")
    others = [x for x in scan_ledger(path) if isinstance(x, dict)]
    decoded = list(read_ledger(path))
    fast = ("state", "call_ok", "call_start", "sink_put")
    assert [e for e in others if e["ev"] not in fast] == [e for e in decoded if e["ev"] not in fast]
    assert all(e in decoded for e in others)


def test_the_workers_own_time_only_lines_take_the_fast_path(tmp_path: Path) -> None:
    """On a real run of the reference, every state, call_ok, call_start and sink_put line is read by the regex."""
    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    docs = make_documents(12, seed=4, min_bytes=100, max_bytes=500)
    spec = RunSpec(impl=solution_module(), input=write_input(tmp_path / "input.json", docs), run_dir=tmp_path / "run",
                   plan=FaultPlan(seed=4, transient_rate=0.2), latency=LatencyModel(median_ms=1.0),
                   config=BatchConfig(concurrency=4), timeout_s=120)
    run_passes(spec, [CrashPlan()])
    ledger = RunDir(spec.run_dir).ledger
    kinds = [e["ev"] for e in read_ledger(ledger)]
    assert kinds.count("state") and kinds.count("call_ok") and kinds.count("call_fail") and kinds.count("sink_put")
    fast = ("state", "call_ok", "call_start", "sink_put")
    assert not [x for x in scan_ledger(ledger) if isinstance(x, dict) and x["ev"] in fast]


def _tiny_run(base: Path) -> Path:
    """A run directory with only its spec and a JSON Lines input (nothing committed yet)."""
    docs = [{"id": f"d{i}", "content": f"Document {i}."} for i in range(5)] + [{"id": "", "content": "x"}]
    source = base / "input.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    run = base / "run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"input": str(source), "impl": "x.py"}))
    return run


def test_the_workers_memo_spares_the_validating_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the worker's memo of this very input, the metrics fold it without validating it first."""
    from batchlab import batchstream
    from batchlab.metrics import metrics_for_run
    from batchlab.worker import INPUT_CHECKED

    run = _tiny_run(tmp_path)
    batchstream.open_checked(tmp_path / "input.jsonl", run / INPUT_CHECKED)  # what the worker leaves
    before = metrics_for_run(run).to_dict()

    def refuse(*_: object) -> int:
        raise AssertionError("validated again")

    monkeypatch.setattr(batchstream, "_validate", refuse)
    assert metrics_for_run(run).to_dict() == before
    assert before["documents"] == 6 and before["rejected"] == 1


def test_a_stale_memo_that_cannot_be_rewritten_still_gives_the_metrics(tmp_path: Path) -> None:
    """An input changed since the memo, in a directory where the memo cannot be rewritten: validated, same figures."""
    from batchlab import batchstream
    from batchlab.metrics import metrics_for_run
    from batchlab.worker import INPUT_CHECKED

    run = _tiny_run(tmp_path)
    expected = metrics_for_run(run).to_dict()
    batchstream.open_checked(tmp_path / "input.jsonl", run / INPUT_CHECKED)
    memo = json.loads((run / INPUT_CHECKED).read_text())
    (run / INPUT_CHECKED).write_text(json.dumps({**memo, "size": memo["size"] + 1}))
    (run / (INPUT_CHECKED + ".tmp")).mkdir()  # the memo's atomic rewrite fails
    assert metrics_for_run(run).to_dict() == expected
