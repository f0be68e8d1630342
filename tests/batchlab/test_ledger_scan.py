"""The scanner's fast path for call_start and sink_put lines gives the fold what the JSON decoder gives it."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from batchlab import ledger_scan
from batchlab.fold_store import FoldStore, Latencies
from batchlab.ledger import encode_event
from batchlab.ledger_scan import Work, read_ledger, scan_ledger
from batchlab.ledger_views import usable_event
from batchlab.metric_fold import fold_ledger
from batchlab.metric_sinks import FileSink, SinkPuts
from batchlab.sink import SCHEMA

T0 = 1796562440.4044147


def _start(t: float, pass_no: int, ident: str, *, attempt: int = 1, inflight: int = 1, doc_inflight: int = 1,
           doc_id: str = "d1") -> bytes:
    return encode_event("call_start", t, pass_no, 77, {"doc_id": doc_id, "ident": ident, "chunk": 0,
                                                         "attempt": attempt, "call": 1, "inflight": inflight,
                                                         "doc_inflight": doc_inflight})


def _put(t: float, pass_no: int, ident: str, *, upgrade: bool = False, key: str = "k1") -> bytes:
    return encode_event("sink_put", t, pass_no, 77, {"doc_id": "d1", "ident": ident, "key": key, "mode": "full",
                                                       "n": 1, "writes": 1, "upgrade": upgrade})


#: Lines of the worker's exact shape: each must be read by the regex (a Work), never by the decoder.
WORKER_LINES = [
    _start(T0, 1, "wiki|doc-1|416432964f54bd58"),
    _start(T0 + 1, 2, "", attempt=3, inflight=17, doc_inflight=2),  # an empty ident is a string
    _start(T0 + 2, 1, "i", attempt=0, inflight=-1, doc_inflight=0),
    _start(0.5, 0, "i"),  # pass 0: the tally counts it, no pass does
    _put(T0 + 3, 1, "wiki|doc-1|416432964f54bd58"),
    _put(T0 + 4, 3, "i", upgrade=True, key='k "quoted" \\ \u0001'),  # escapes in a field the fold does not read
]

#: Lines of those kinds written otherwise: each must mean to the fold what the decoder makes of it.
ODD_LINES = [
    _start(T0, 1, "i")[:-2] + b',"x":1}\n',  # an extra field
    _put(T0, 1, "i")[:-2] + b',"unbacked":[0,1]}\n',  # the harness's extra field, a list
    _start(T0, 1, "a")[:-2] + b',"ident":"b"}\n',  # a repeated key: the last one wins
    _put(T0, 1, "a")[:-2] + b',"t":1.5}\n',
    _start(T0, 1, "a")[:-2] + b',"upgrade":true,"pass":2}\n',
    _start(T0, 1, "文档|1"),  # not ASCII: UTF-8 bytes
    _put(T0, 1, "caf\u00e9"),
    _start(T0, 1, "i", doc_id="文档"),
    _start(T0, 1, 'a"b\\c'),  # escapes in the ident
    b'{"ev":"call_start","t":1.5,"pass":1,"pid":7,"doc_id":"d","ident":"\\u0069","chunk":0,"attempt":1,"call":1,'
    b'"inflight":1,"doc_inflight":1}\n',
    _start(T0, 1, "i", attempt=10**30),  # big numbers
    _start(T0, 1, "i", inflight=-(10**19)),
    b'{"ev":"sink_put","t":1' + b"0" * 40 + b'.5,"pass":1,"pid":7,"doc_id":"d","ident":"i","key":"k","mode":"full",'
    b'"n":1,"writes":1,"upgrade":false}\n',
    b'{"ev":"sink_put","t":1' + b"0" * 400 + b'.5,"pass":1,"pid":7,"doc_id":"d","ident":"i","key":"k","mode":"full",'
    b'"n":1,"writes":1,"upgrade":false}\n',  # t overflows to inf: not usable
    b'{"ev":"call_start","t":12,"pass":1,"pid":7,"doc_id":"d","ident":"i","chunk":0,"attempt":1,"call":1,'
    b'"inflight":1,"doc_inflight":1}\n',  # an integer time
    b'{"ev":"call_start","t":1.5e3,"pass":"2","pid":7,"doc_id":"d","ident":"i","chunk":0,"attempt":1,"call":1,'
    b'"inflight":1,"doc_inflight":1}\n',
    _put(T0, 1, "i").replace(b'"upgrade":false', b'"upgrade":1'),  # not true: no upgrade
    _put(T0, 1, "i").replace(b'"ident":"i"', b'"ident":7'),  # not a string: skipped
    _start(T0, 1, "i").replace(b',"ident":"i"', b""),  # no ident: skipped
    _start(T0, 1, "i").replace(b'"pid":77', b'"pid":7.5'),
    _start(T0, 1, "i")[:-1] + b" \n",  # trailing space
    _start(T0, 1, "i").replace(b'"doc_id":"d1"', b'"doc_id":"d\x00"'),  # a control character: not JSON
    _start(T0, 1, "i").replace(b'"doc_id":"d1"', b'"doc_id":"d\xff"'),  # not UTF-8
    _start(T0, 1, "i").replace(b'"inflight":1', b'"inflight":01'),  # a leading zero: not JSON
    _start(T0, 1, "i")[:40] + b"\n",  # torn in the middle, then a newline
]


def _view(items: list[Any]) -> tuple[list[tuple[Any, ...]], dict[int, list[int]]]:
    """What the fold takes from calls and commits: each in order, and each pass's counts and maxima.

    From :class:`Work` as they are, from decoded events as :class:`batchlab.metric_ledger.Tally` and
    :class:`batchlab.metric_ledger.PassFold` read them (ticks and other kinds are left out). The counts:
    calls, retries, largest attempt, inflight and doc_inflight, commits, upgrades.
    """
    lines: list[tuple[Any, ...]] = []
    counts: dict[int, list[int]] = {}
    for item in items:
        if isinstance(item, Work):
            lines += [("call_start" if s else "sink_put", item.pass_no, i, t)
                      for s, i, t in zip(item.starts, item.idents, item.times, strict=True)]
            pass_no, got = item.pass_no, [item.calls, item.retries, item.max_attempt, item.max_inflight,
                                          item.max_doc_inflight, item.committed, item.upgraded]
        elif isinstance(item, dict) and (ev := usable_event(item)) is not None and ev["ev"] in ("call_start",
                                                                                               "sink_put"):
            lines.append((ev["ev"], ev["pass"], ev["ident"], ev["t"]))
            call = ev["ev"] == "call_start"
            pass_no, got = ev["pass"], [
                call, call and int(ev.get("attempt", 1)) > 1, int(ev.get("attempt", 0)) if call else 0,
                int(ev.get("inflight", 0)) if call else 0, int(ev.get("doc_inflight", 0)) if call else 0,
                not call, not call and ev.get("upgrade") is True]
        else:
            continue
        was = counts.setdefault(pass_no, [0] * 7)
        counts[pass_no] = [a + b if k in (0, 1, 5, 6) else max(a, b) for k, (a, b) in enumerate(zip(was, got, strict=True))]
    return lines, counts


def _ledger(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize("line", WORKER_LINES, ids=range(len(WORKER_LINES)))
def test_a_worker_line_is_read_by_the_regex_as_the_decoder_reads_it(tmp_path: Path, line: bytes) -> None:
    """Each call_start and sink_put of the worker's shape becomes Work that says what its decoded event says."""
    path = _ledger(tmp_path / "ledger.jsonl", [line])
    scanned = list(scan_ledger(path))
    assert any(isinstance(x, Work) for x in scanned) and not any(isinstance(x, dict) for x in scanned)
    assert _view(scanned) == _view(list(read_ledger(path)))


@pytest.mark.parametrize("line", ODD_LINES, ids=range(len(ODD_LINES)))
def test_an_odd_line_goes_to_the_decoder_and_means_the_same(tmp_path: Path, line: bytes) -> None:
    """A line written otherwise (extra field, repeated key, not ASCII, big number, bad JSON) is decoded, not guessed."""
    path = _ledger(tmp_path / "ledger.jsonl", [line])
    scanned = list(scan_ledger(path))
    assert not any(isinstance(x, Work) for x in scanned)
    assert scanned == list(read_ledger(path))  # the decoded event itself, or nothing where the decoder skips it


def test_a_torn_last_line_is_skipped_both_ways(tmp_path: Path) -> None:
    """A call_start without its newline at the end of the file is no event, whichever reader reads it."""
    path = _ledger(tmp_path / "ledger.jsonl", [WORKER_LINES[0], WORKER_LINES[4][:-1]])
    assert _view(list(scan_ledger(path))) == _view(list(read_ledger(path)))
    assert len(_view(list(scan_ledger(path)))[0]) == 1


def _mixed_ledger(seed: int, n: int = 400) -> list[bytes]:
    """Calls and commits of three passes, retries, upgrades, re-executions, odd lines and time-only lines mixed in."""
    rng = random.Random(seed)
    lines = [encode_event("pass_start", T0 - 1, 1, 77, {"t0": T0 - 1.5})]
    t, pass_no = T0, 1
    for k in range(n):
        t += rng.random() * 0.01
        if rng.random() < 0.01:
            pass_no += 1
            lines.append(encode_event("pass_start", t, pass_no, 78, {"t0": t - 0.5}))
        if rng.random() < 0.02:
            pass_no = rng.choice([1, 2, 3])  # a fleet's passes write one ledger side by side
        ident = f"src|doc-{rng.randrange(n // 3)}|{k % 7}"
        choice = rng.random()
        if choice < 0.35:
            lines.append(_start(t, pass_no, ident, attempt=rng.choice([1, 1, 1, 2, 3]), inflight=rng.randrange(9),
                                doc_inflight=rng.randrange(3)))
        elif choice < 0.65:
            lines.append(_put(t, pass_no, ident, upgrade=rng.random() < 0.1))
        elif choice < 0.9:
            lines.append(encode_event("state", t, pass_no, 77, {"doc_id": "d", "state": "processing", "error": None,
                                                                 "attempts": 1}))
        elif choice < 0.95:
            lines.append(rng.choice(ODD_LINES).replace(b'"i"', f'"{ident}"'.encode()))
        else:
            lines.append(encode_event("call_fail", t, pass_no, 77, {"doc_id": "d", "ident": ident, "chunk": 0,
                                                                     "attempt": 1, "call": 1, "error": "timeout",
                                                                     "permanent": False}))
    return lines


@pytest.mark.parametrize("block", [ledger_scan.BLOCK_BYTES, 97, 700, 4096], ids=["default", "97 B", "700 B", "4 KB"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_mixed_ledger_folds_the_same_scanned_or_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          block: int, seed: int) -> None:
    """Every figure of every pass (latencies, first new call, tallies) is the same, spilled or not, whatever the blocks."""
    monkeypatch.setattr(ledger_scan, "BLOCK_BYTES", block)
    path = _ledger(tmp_path / "ledger.jsonl", _mixed_ledger(seed))
    scanned = list(scan_ledger(path))
    assert sum(isinstance(x, Work) for x in scanned) and sum(isinstance(x, dict) for x in scanned)
    assert _view(scanned) == _view(list(read_ledger(path)))
    committed = {f"src|doc-{k}|{k % 7}" for k in range(0, 130, 3)}
    for spill_a, spill_b in ((10**9, 0), (0, 10**9), (5, 5)):
        with FoldStore(on_disk=False, spill_keys=spill_a) as a, FoldStore(on_disk=True, spill_keys=spill_b) as b:
            def before(ident: str, pass_no: int) -> bool:
                return pass_no > 1 and ident in committed
            assert fold_ledger(scanned, a, before) == fold_ledger(read_ledger(path), b, before)


def test_latencies_added_at_once_are_those_added_one_by_one() -> None:
    """extend gives the counts, values and percentiles of add, before, across and after the spill."""
    rng = random.Random(4)
    with FoldStore(on_disk=False, spill_keys=40) as a, FoldStore(on_disk=False, spill_keys=40) as b:
        one, many = Latencies(a), Latencies(b)
        for size in (0, 5, 20, 30, 1, 4000, 3):
            pass_no = rng.choice([1, 2])
            values = [rng.random() for _ in range(size)]
            for v in values:
                one.add(pass_no, v)
            many.extend(pass_no, values)
        assert many.spilled and one.spilled
        for p in (None, 1, 2):
            assert list(many.values(p)) == list(one.values(p)) and many.count(p) == one.count(p)
            assert many.percentile(50, p) == one.percentile(50, p) and many.percentile(95, p) == one.percentile(95, p)


def _sink(path: Path, puts: list[tuple[str, int]]) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO puts (key, doc_id, ident, mode, pass, t, upgrade) VALUES (?, 'd', ?, 'full', ?, 1.0, 0)",
                     [(f"k{n}", ident, p) for n, (ident, p) in enumerate(puts)])
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("puts", [[], [("a", 1), ("b", 2), ("a", 3)], [("a", 2), ("c", 2)]],
                         ids=["no puts", "three passes", "from pass 2"])
def test_the_sinks_own_puts_answer_who_was_committed_before_as_the_copy_does(tmp_path: Path,
                                                                             puts: list[tuple[str, int]]) -> None:
    """SinkPuts (no copy, then scans, then a copy past SCANS questions) answers as the indexed copy of the puts."""
    path = _sink(tmp_path / "sink.sqlite", puts)
    questions = [(ident, p) for p in (0, 1, 2, 3, 4) for ident in ("a", "b", "c", "z")]
    with FoldStore(on_disk=False) as copied, FoldStore(on_disk=True) as lazy:
        FileSink(path).load_puts(copied, outputs=False)
        copied.index_puts()
        asked = SinkPuts(FileSink(path), lazy)
        assert [asked(i, p) for i, p in questions] == [copied.committed_before(i, p) for i, p in questions]
        assert lazy.db.execute("SELECT COUNT(*) FROM puts").fetchone()[0] == len(puts)  # copied past SCANS questions
    with FoldStore(on_disk=False) as store:
        assert not SinkPuts(FileSink(None), store)("a", 5)  # no sink file: nothing was committed


def test_the_largest_time_is_the_largest_number_whatever_the_texts() -> None:
    """Times of the worker's shape compared as texts, and any other shape (sign, short, long): the float max."""
    rng = random.Random(8)
    shapes = [lambda: f"{rng.randrange(10**9, 10**10)}.{rng.randrange(10**rng.randint(1, 7))}",
              lambda: f"17965624{rng.randrange(10, 99)}.{rng.choice(['5', '50', '05', '4999999'])}",
              lambda: f"-{rng.randrange(10**8, 10**9)}.{rng.randrange(100)}",
              lambda: f"{rng.randrange(100)}.{rng.randrange(100)}",
              lambda: f"{rng.randrange(10**11, 10**12)}.5"]
    for _ in range(3000):
        picked = rng.sample(shapes, rng.choice([1, 1, 2, 3]))
        times = tuple(rng.choice(picked)().encode() for _ in range(rng.randint(1, 6)))
        assert ledger_scan._largest(times) == max(map(float, times)), times


@pytest.mark.parametrize("passes", [[1], [2, 1]], ids=["one pass", "two passes"])
@pytest.mark.parametrize("spill", [10**9, 30], ids=["in memory", "spilled"])
def test_latency_percentiles_and_samples_are_those_of_the_plain_lists(passes: list[int], spill: int) -> None:
    """Each pass's and the run's p50/p95 (one index or two), and every step-th value of a pass, as from lists."""
    from batchlab.contract import percentile

    rng = random.Random(len(passes) + spill)
    kept: dict[int, list[float]] = {p: [] for p in passes}
    with FoldStore(on_disk=True, spill_keys=spill) as store:
        lat = Latencies(store)
        for _ in range(40):
            p, values = rng.choice(passes), [round(rng.random(), 3) for _ in range(rng.randint(0, 9))]
            lat.extend(p, values)
            kept[p] += values
        assert lat.spilled == (spill < 10**9)
        everything = [v for p in passes for v in kept[p]]
        for q in (0, 50, 95, 100):
            assert lat.percentile(q) == percentile(everything, q)
            for p in passes:
                assert lat.percentile(q, p) == percentile(kept[p], q)
        for p in passes:
            for step in (1, 2, 7, 1000):
                assert lat.sample(p, step) == kept[p][::step]
