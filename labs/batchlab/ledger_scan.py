"""A run's ledger read fast for the metric fold: the same events as :func:`batchlab.ledger.iter_events`, fewer decoded.

The fold reads every line of the ledger (about five a document: 5.2 million lines, 935 MB at a million
documents), and most of them say little to it: a ``state`` or ``call_ok`` event counts only as a time
in its pass (the pass's first and last event), whatever else it holds. :func:`scan_ledger` reads the
file in large blocks and lets one regular expression (C speed, the whole block at once) recognise such
lines when they are written the way the worker writes them (``{"ev":"state","t":...,"pass":...`` then
flat fields of plain ASCII strings, bounded numbers, ``null``, ``true``, ``false``; a ``call_ok`` with
exactly one string ``ident``): for those it yields ``(pass, t)`` without building a dict. The pattern
admits only lines that are valid JSON objects whose ``ev``, ``t`` and ``pass`` are these very values
(no repeated key can override them, no number can overflow, no byte outside ASCII) and that
:func:`batchlab.ledger_views.usable_event` would accept; every other line, however odd, goes through
the JSON decoder exactly as :func:`read_ledger` decodes it. So a line means the same to the fold either way,
and a ledger written some other way (a new field of another type, a key order changed) is only slower.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from itertools import compress
from pathlib import Path
from typing import Any

from .ledger_read import events_of

#: Bytes read at a time (a block ends at its last newline; the rest starts the next one).
BLOCK_BYTES = 1 << 18

_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WHITESPACE = " \t\n\r"

# JSON pieces, as bytes: a string of printable ASCII (escapes allowed), bounded numbers (no overflow, no inf)
_STR = rb'"[^"\\\x00-\x1f\x7f-\xff]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f\x7f-\xff]*)*"'
_INT = rb"-?(?:0|[1-9][0-9]{0,17})"
_NUM = rb"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?"
_TIME = rb"(-?(?:0|[1-9][0-9]{0,30})\.[0-9]{1,30})"  # a fraction: JSON reads it as a float, always finite
_PASS = b"(" + _INT + b")"
_VALUE = b"(?:" + _STR + b"|" + _NUM + rb"|null|true|false)"


def _fields(excluded: bytes) -> bytes:
    """Any number of ``,"name":value`` whose name is none of ``excluded`` (so none can override them)."""
    return rb',"(?!(?:' + excluded + rb')")[a-z_]{1,40}":' + _VALUE


#: A line that counts only as a time: ``state`` (any flat fields), ``call_ok`` (exactly one string ``ident``),
#: first as the worker writes them (fastest), then with any flat fields; else the last group, the whole line,
#: for the decoder. Groups: four pairs of (t, pass), then the other line.
_LINE = re.compile(
    rb'\{"ev":"(?:state","t":' + _TIME + b',"pass":' + _PASS + b',"pid":' + _INT + b',"doc_id":' + _STR
    + b',"state":' + _STR + b',"error":(?:' + _STR + b'|null),"attempts":' + _INT + b"\\}\n"
    + rb'|call_ok","t":' + _TIME + b',"pass":' + _PASS + b',"pid":' + _INT + b',"doc_id":' + _STR
    + b',"ident":' + _STR + b',"chunk":' + _INT + b',"attempt":' + _INT + b',"call":' + _INT
    + b',"latency":' + _NUM + b"\\}\n"
    + rb'|state","t":' + _TIME + b',"pass":' + _PASS + b"(?:" + _fields(b"ev|t|pass") + b")*\\}\n"
    + rb'|call_ok","t":' + _TIME + b',"pass":' + _PASS + b"(?:" + _fields(b"ev|t|pass|ident") + b')*,"ident":'
    + _STR + b"(?:" + _fields(b"ev|t|pass|ident") + b")*\\}\n)"
    + rb"|([^\n]*\n)")

#: What :func:`scan_ledger` yields for lines that only count as times: ``(pass, first t, largest t)``.
Tick = tuple[int, float, float]


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


def scan_ledger(path: Path) -> Iterator[dict[str, Any] | Tick]:
    """:func:`read_ledger`'s events in order, the lines that only count as times folded into ticks.

    A tick ``(pass, first t, largest t)`` stands for one or more events of ``pass`` that
    :func:`batchlab.ledger_views.usable_event` accepts as they are, whose kind is ``state`` or ``call_ok``:
    the fold needs nothing else of them. It comes where the first of them was (the events before it came
    first), so a pass's first event and its last time are what the events one by one give.
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
                yield from _block_events(found)


def _block_events(found: list[tuple[bytes, ...]]) -> Iterator[dict[str, Any] | Tick]:
    """One block's matches in order: each other line decoded, each pass's time-only lines as one tick.

    The columns are walked by C loops (``zip``, ``filter``, ``map``, ``compress``); only the other lines
    cost a Python step each. A block where the time-only lines name two passes is walked line by line.
    """
    cols = list(zip(*found, strict=True))
    ticks: dict[int, tuple[int, float, float]] = {}  # pass -> (index of its first line, first t, largest t)
    for k in range(0, 8, 2):
        times, passes = cols[k], set(cols[k + 1])
        passes.discard(b"")
        if len(passes) > 1:
            yield from _lines_events(found)
            return
        if passes:
            present = list(filter(None, times))
            first, pass_no = times.index(present[0]), int(passes.pop())
            tick = (first, float(present[0]), max(map(float, present)))
            was = ticks.get(pass_no)
            ticks[pass_no] = tick if was is None else (*min(was[:2], tick[:2]), max(was[2], tick[2]))
    order = sorted((first, pass_no, t0, top) for pass_no, (first, t0, top) in ticks.items())
    lines = cols[8]
    for index in compress(range(len(lines)), lines):
        while order and order[0][0] < index:
            _, pass_no, t0, top = order.pop(0)
            yield pass_no, t0, top
        if (event := event_of(lines[index])) is not None:
            yield event
    for _, pass_no, t0, top in order:
        yield pass_no, t0, top


def _lines_events(found: list[tuple[bytes, ...]]) -> Iterator[dict[str, Any] | Tick]:
    """:func:`_block_events` line by line (a block where a new pass begins)."""
    for t1, p1, t2, p2, t3, p3, t4, p4, line in found:
        if line:
            if (event := event_of(line)) is not None:
                yield event
        else:
            t, p = (t1, p1) if t1 else (t2, p2) if t2 else (t3, p3) if t3 else (t4, p4)
            yield int(p), float(t), float(t)
