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
from pathlib import Path
from typing import Any

#: Bytes read at a time (a block ends at its last newline; the rest starts the next one).
BLOCK_BYTES = 1 << 20

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

#: What :func:`scan_ledger` yields for a line that only counts as a time: ``(pass, t)``.
Tick = tuple[int, float]


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
    """:func:`batchlab.ledger.iter_events`, faster: the same events, skipping the same lines."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n") and (event := event_of(raw)) is not None:
                yield event


def scan_ledger(path: Path) -> Iterator[dict[str, Any] | Tick]:
    """:func:`read_ledger`'s events in order, a line that only counts as a time given as ``(pass, t)``.

    A ``(pass, t)`` stands for an event that :func:`batchlab.ledger_views.usable_event` accepts as it
    is, whose kind is ``state`` or ``call_ok``: the fold needs nothing else of it.
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
            for t1, p1, t2, p2, t3, p3, t4, p4, line in _LINE.findall(block, 0, cut):
                if line:
                    if (event := event_of(line)) is not None:
                        yield event
                elif t1:
                    yield int(p1), float(t1)
                elif t2:
                    yield int(p2), float(t2)
                elif t3:
                    yield int(p3), float(t3)
                else:
                    yield int(p4), float(t4)
