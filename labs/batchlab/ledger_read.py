"""Reading a run's ledger back: a line as its event, the whole file in order, or what was appended since.

Split from :mod:`batchlab.ledger` (what the ledger holds and how a line is written); every name here is
also importable from there. Readers never fail on a line: a torn last line (a worker killed mid-write
cannot leave one, a copy made meanwhile can) or a foreign one is skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def parse_event(raw: bytes) -> dict[str, Any] | None:
    """One ledger line as its event; None for a line that is not JSON or not an event (skipped, never fatal)."""
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "ev" in event else None


def events_of(path: str | Path, parse: Callable[[bytes], dict[str, Any] | None]) -> Iterator[dict[str, Any]]:
    """The events of a ledger in order, each complete line read by ``parse`` (None: skipped); a torn last line too.

    The one loop of every whole-ledger reader: :func:`iter_events` with :func:`parse_event`, and
    :func:`batchlab.ledger_scan.read_ledger` with its faster parser of the same lines.
    """
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n") and (event := parse(raw)) is not None:
                yield event


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the events of a ledger in order; a torn or foreign line is skipped, never fatal."""
    return events_of(path, parse_event)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_events(path))


class LedgerTail:
    """Reads the events appended to a ledger since the last call (live progress: the runner, the dashboard, chaos).

    A line still being written stays in a buffer until its newline arrives; a line that is not JSON is skipped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def skip_existing(self) -> None:
        """Start after the complete lines already in the file, without parsing them; a torn last line is read later.

        A new pass wants only its own events, and a finished run's ledger is ~900 bytes a document:
        reading it to drop it made 1 GB of Python objects at 100 000 documents.
        """
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            pos = fh.seek(0, os.SEEK_END)
            while pos > 0:
                step = min(1 << 16, pos)
                fh.seek(pos - step)
                newline = fh.read(step).rfind(b"\n")
                if newline >= 0:
                    self._offset, self._partial = pos - step + newline + 1, b""
                    return
                pos -= step

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                blob = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(blob)
        blob = self._partial + blob
        lines = blob.split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                events.append(ev)
        return events
