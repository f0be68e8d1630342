"""A run's ledger read fast for the metric fold: the same events as :func:`batchlab.ledger.iter_events`, fewer decoded.

The fold reads every line of the ledger (about five a document: 5.2 million lines, 935 MB at a million
documents). :func:`scan_ledger` reads the file in large blocks and lets one regular expression (C speed,
the whole block at once) recognise the four kinds of line the worker writes by the million, when they
are written the way it writes them, and pick out what the fold needs of each:

* a ``state`` (any flat fields) or ``call_ok`` (exactly one string ``ident``): only a time in its pass
  (the pass's first and last event): folded into a :data:`Tick`;
* a ``call_start`` (the worker's exact fields): its time, ``ident``, ``attempt``, ``inflight`` and
  ``doc_inflight``; a ``sink_put`` (the worker's exact fields): its time, ``ident`` and ``upgrade``.
  Consecutive ones of a pass become one :class:`Work`: their counts and maxima, and their identities
  and times in ledger order (the first dispatch of each identity, the latency of each commit).

The pattern admits only lines that are valid JSON objects whose ``ev``, ``t``, ``pass`` (and the captured
fields) are these very values: flat fields of plain ASCII strings (an ``ident`` without escapes, so its
bytes are its text), bounded integers, fractions for times, ``null``, ``true``, ``false``; no repeated key
can override them, no number can overflow, no byte outside ASCII, and
:func:`batchlab.ledger_views.usable_event` would accept them as they are. Every other line, however odd
(another field, another key order, a non-ASCII name, a torn line), goes through the JSON decoder exactly as
:func:`read_ledger` decodes it, in its place. So a line means the same to the fold either way, and a ledger
written some other way is only slower (``tests/batchlab/test_ledger_scan.py`` holds the two ways equal).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any

from .ledger_read import events_of

#: Bytes read at a time (a block ends at its last newline; the rest starts the next one).
BLOCK_BYTES = 1 << 18

_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WHITESPACE = " \t\n\r"

# JSON pieces, as bytes: a string of printable ASCII (escapes allowed), bounded numbers (no overflow, no inf)
_STR = rb'"[^"\\\x00-\x1f\x7f-\xff]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f\x7f-\xff]*)*"'
_ID = rb'"([^"\\\x00-\x1f\x7f-\xff]*)"'  # a string without escapes, captured: its bytes are its text
_INT = rb"-?(?:0|[1-9][0-9]{0,17})"
_NUM = rb"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?"
_TIME = rb"(-?(?:0|[1-9][0-9]{0,30})\.[0-9]{1,30})"  # a fraction: JSON reads it as a float, always finite
_VALUE = b"(?:" + _STR + b"|" + _NUM + rb"|null|true|false)"
_HEAD = b',"pid":' + _INT + b',"doc_id":' + _STR


def _fields(excluded: bytes) -> bytes:
    """Any number of ``,"name":value`` whose name is none of ``excluded`` (so none can override them)."""
    return rb',"(?!(?:' + excluded + rb')")[a-z_]{1,40}":' + _VALUE


#: One line: the kind (a letter for ``call_ok``, ``call_start``, ``sink_put``; none for ``state``), then
#: ``t`` and ``pass`` (shared by the four), then the tail the kind must have (a conditional on the letter),
#: else the whole line for the decoder.
_LINE = re.compile(
    rb'\{"ev":"(?:state|call_(o)k|call_(s)tart|sink_(p)ut)","t":' + _TIME + b',"pass":(' + _INT + b")"
    + b"(?(1)(?:" + _HEAD + b',"ident":' + _STR + b',"chunk":' + _INT + b',"attempt":' + _INT + b',"call":' + _INT
    + b',"latency":' + _NUM + b"\\}\n"
    + b"|(?:" + _fields(b"ev|t|pass|ident") + b')*,"ident":' + _STR + b"(?:" + _fields(b"ev|t|pass|ident") + b")*\\}\n)"
    + b"|(?(2)" + _HEAD + b',"ident":' + _ID + b',"chunk":' + _INT + b',"attempt":(' + _INT + b'),"call":' + _INT
    + b',"inflight":(' + _INT + b'),"doc_inflight":(' + _INT + b")\\}\n"
    + b"|(?(3)" + _HEAD + b',"ident":' + _ID + b',"key":' + _STR + b',"mode":' + _STR + b',"n":' + _INT
    + b',"writes":' + _INT + b',"upgrade":(true|false)\\}\n'
    + b"|(?:" + _HEAD + b',"state":' + _STR + b',"error":(?:' + _STR + b'|null),"attempts":' + _INT + b"\\}\n"
    + b"|(?:" + _fields(b"ev|t|pass") + b")*\\}\n))))"
    + rb"|([^\n]*\n)")
#: The groups of :data:`_LINE` after the first (the letter of ``call_ok``), in order: the letter of ``call_start``
#: and of ``sink_put``, t, pass, a call's ident, attempt, inflight, doc_inflight, a put's ident and upgrade, and
#: the other line (for the decoder).
_START, _PUT, _T, _PASS, _CALL_ID, _ATTEMPT, _INFLIGHT, _DOC_INFLIGHT, _PUT_ID, _UPGRADE, _OTHER = range(1, 12)

#: Lines that only count as times, folded: ``(pass, first t, largest t)``.
Tick = tuple[int, float, float]


@dataclass(slots=True)
class Work:
    """Consecutive ``call_start`` and ``sink_put`` lines of one pass (with the time-only lines among them).

    What the fold takes from each, already counted: the calls, those with ``attempt`` above 1, the
    largest ``attempt``, ``inflight`` and ``doc_inflight`` (0 without calls), the commits and those with
    ``upgrade`` true; and, in ledger order, each line's kind (``starts``: True for a call), ``ident``
    and time, for the first dispatch of each identity and the latency of each commit.
    """

    pass_no: int
    calls: int
    retries: int
    max_attempt: int
    max_inflight: int
    max_doc_inflight: int
    committed: int
    upgraded: int
    starts: list[bool]
    idents: list[str]
    times: list[float]


def event_of(raw: bytes) -> dict[str, Any] | None:
    """One complete ledger line as :func:`batchlab.ledger.parse_event` reads it (None: skipped), faster.

    A line that starts with ``{`` is decoded and scanned by the C scanner at once, without ``json.loads``'s
    encoding detection; anything else goes through ``json.loads`` itself, so it means exactly what it
    means to :func:`batchlab.ledger.iter_events`.
    """
    try:
        if raw[:1] == b"{" and b"\x00" not in raw[:4]:
            text = raw.decode("utf-8", "surrogatepass")
            event, end = _SCAN(text, 0)
            if text[end:].strip(_WHITESPACE):
                return None
        else:
            event = json.loads(raw)
    except (ValueError, StopIteration):
        return None
    return event if isinstance(event, dict) and "ev" in event else None


def read_ledger(path: Path) -> Iterator[dict[str, Any]]:
    """:func:`batchlab.ledger.iter_events`, faster: the same events, skipping the same lines (the same loop)."""
    return events_of(path, event_of)


def scan_ledger(path: Path) -> Iterator[dict[str, Any] | Tick | Work]:
    """:func:`read_ledger`'s events in order, the worker's own lines of the four kinds as ticks and work.

    A tick ``(pass, first t, largest t)`` stands for consecutive lines of ``pass`` read by the fast path:
    their first time and their largest. It comes where the first of them was, followed by their
    :class:`Work` when some of them are calls or commits; a line decoded (any other line) comes in its
    place between them. So a pass's first event and its last time, its dispatches and its commits are
    what the events one by one give.
    """
    if not path.exists():
        return
    with path.open("rb") as fh:
        rest = b""
        while True:
            block = fh.read(BLOCK_BYTES)
            if not block:
                return  # what is left in ``rest`` is a torn last line: skipped, as iter_events skips it
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest = block[cut:]
            found = _LINE.findall(block, 0, cut)
            if found:
                yield from _block_items(found)


def _block_items(found: list[tuple[bytes, ...]]) -> Iterator[dict[str, Any] | Tick | Work]:
    """One block's matches in order: runs of fast lines of one pass (:func:`_run_items`), other lines decoded.

    The columns are walked by C loops (``zip``, ``compress``, ``map``); only the other lines, and the
    lines of a block where a new pass begins, cost a Python step each.
    """
    cols = list(zip(*found, strict=True))
    passes = set(cols[_PASS])
    passes.discard(b"")
    others = list(compress(range(len(found)), cols[_OTHER]))
    if len(passes) > 1:  # a pass begins in this block: cut where the pass changes too
        seen, cuts = b"", []
        for i, p in enumerate(cols[_PASS]):
            if p and p != seen:
                if seen:
                    cuts.append(i)
                seen = p
        bounds = sorted({*others, *cuts})
    else:
        bounds = others
    start = 0
    for i in bounds:
        if start < i:
            yield from _run_items(cols, start, i)
        if cols[_OTHER][i]:
            start = i + 1
            if (event := event_of(cols[_OTHER][i])) is not None:
                yield event
        else:
            start = i
    if start < len(found):
        yield from _run_items(cols, start, len(found))


def _run_items(cols: list[tuple[bytes, ...]], a: int, b: int) -> Iterator[Tick | Work]:
    """Lines ``a`` to ``b`` of a block, all read by the fast path and of one pass: a tick, then their work."""
    times = cols[_T][a:b]
    pass_no = int(cols[_PASS][a])
    yield pass_no, float(times[0]), _largest(times)
    starts, puts = cols[_START][a:b], cols[_PUT][a:b]
    work = list(map(max, starts, puts))  # b"s", b"p" or b"" (a time-only line)
    if not any(work):
        return
    attempts = list(filter(None, cols[_ATTEMPT][a:b]))
    calls = len(attempts)
    retries, max_attempt, max_inflight, max_doc_inflight = 0, 0, 0, 0
    if calls:
        if attempts.count(b"1") == calls:
            max_attempt = 1
        else:
            numbers = list(map(int, attempts))
            retries, max_attempt = sum(map((1).__lt__, numbers)), max(numbers)
        max_inflight = max(map(int, filter(None, cols[_INFLIGHT][a:b])))
        max_doc_inflight = max(map(int, filter(None, cols[_DOC_INFLIGHT][a:b])))
    idents = list(map(bytes.decode, compress(map(max, cols[_CALL_ID][a:b], cols[_PUT_ID][a:b]), work)))
    yield Work(pass_no=pass_no, calls=calls, retries=retries, max_attempt=max_attempt, max_inflight=max_inflight,
               max_doc_inflight=max_doc_inflight, committed=len(idents) - calls,
               upgraded=cols[_UPGRADE][a:b].count(b"true"), starts=list(map(bool, compress(starts, work))),
               idents=idents, times=list(map(float, compress(times, work))))


_AT_10 = itemgetter(10)


def _largest(times: tuple[bytes, ...]) -> float:
    """The largest of ``times`` (:data:`_TIME` texts) as a float, most often without converting each.

    The worker's times are ten digits, a point and a fraction: texts of that shape (no sign, the point
    at index 10) compare as text as they do as numbers, and ``float`` keeps that order, so the largest
    text is the largest number. Any other time in the run: each converted.
    """
    try:
        if min(times)[:1] != b"-" and set(map(_AT_10, times)) == {46}:  # 46: "."
            return float(max(times))
    except IndexError:  # a time shorter than 11 characters
        pass
    return max(map(float, times))
