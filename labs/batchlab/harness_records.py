"""The harness side's records: its ledger and sink, and the checks that nothing else wrote them.

Behind the process boundary (:mod:`batchlab.harness`) the ledger and the sink are written by the
harness side only. In bubblewrap the worker cannot even see them; without it the worker runs as the
same user and could open both, so each pass is watched (:class:`RecordsWatch`): at its start the
files must be as the last pass left them (a :class:`Seal` kept in this process), at its end the
ledger must hold exactly the lines the harness wrote since the start, no other connection may have
committed to the sink (``PRAGMA data_version``) and neither file may have been replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .docmodel import ident_of
from .ledger import ENVELOPE, Ev, Ledger, encode_event
from .ledger_views import answered_chunks
from .pipeline import MODE_DEGRADED
from .rundir import RunDir
from .sink import SqliteSink

#: The events a worker may add to the ledger: its own account, never a call or a commit.
WORKER_EVENTS = frozenset({Ev.PASS_START, Ev.STATE, Ev.STUDENT_ERROR, Ev.INPUT_ERROR, Ev.PASS_END, Ev.STOPPED})
#: How many documents' identities :class:`Backing` remembers (far more than a batch has in flight).
IDENT_CACHE = 4096


class Backing:
    """Which chunks the service answered in this run (any pass): a full output needs an answer for each.

    The harness side notes every answered call (:meth:`answered`) and asks, for a full put, which of
    its chunks no call answered (:meth:`missing`): such an output is committed but marked ``unbacked``.
    A document's identity hashes its whole content, and every call of it needs one: they are remembered
    for the last :data:`IDENT_CACHE` documents (at 13 chunks a document, computing each again was a fifth
    of the harness side's time in a zero-latency pass).
    """

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        self.chunks = answered_chunks(events)
        self._idents: dict[tuple[str, str, str], str] = {}

    def ident(self, doc: Any) -> str:
        """``ident_of(doc)``, remembered (bounded: the memory is cleared when full)."""
        cache_key = (doc.source, doc.id, doc.content)
        found = self._idents.get(cache_key)
        if found is None:
            if len(self._idents) >= IDENT_CACHE:
                self._idents.clear()
            found = self._idents[cache_key] = ident_of(doc)
        return found

    def answered(self, doc: Any, chunk: int) -> None:
        self.chunks.add((self.ident(doc), chunk))

    def missing(self, doc: Any, mode: str, chunks: int) -> list[int]:
        """The chunks of a ``mode`` output of ``chunks`` chunks that no call answered (none for a degraded one)."""
        if mode == MODE_DEGRADED:
            return []
        ident = self.ident(doc)
        return [i for i in range(max(1, chunks)) if (ident, i) not in self.chunks]


class HarnessLedger(Ledger):
    """The pass's ledger, written from two threads (the harness loop, the runner's kills), remembering its lines."""

    def __init__(self, path: Path, *, pass_no: int) -> None:
        super().__init__(path, pass_no=pass_no)
        self._lock = threading.Lock()
        self.written = bytearray()
        self.put_extra: dict[str, Any] | None = None  #: fields added to the next ``sink_put`` (``unbacked``)

    def set_pid(self, pid: int) -> None:
        self._pid = pid  # the worker's, as an in-process ledger wrote it

    def inode(self) -> int:
        """The inode of the file this ledger writes (another file put at its path would differ)."""
        return os.fstat(self._fd).st_ino

    def emit(self, ev: str, **fields: Any) -> None:
        if ev == Ev.SINK_PUT and self.put_extra:
            fields.update(self.put_extra)
        line = encode_event(ev, self._clock(), self.pass_no, self._pid, fields)
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line)
                self.written += line

    def emit_for_worker(self, frame: Mapping[str, Any], report: Path) -> bool:
        """Write an event the worker sent if it is one of its own (:data:`WORKER_EVENTS`), else refuse it (False).

        The envelope is this side's; the report of a ``pass_end`` is also written to ``report``.
        """
        ev, fields = frame.get("ev"), frame.get("fields")
        if ev not in WORKER_EVENTS or not isinstance(fields, dict):
            return False
        fields = {str(k): v for k, v in fields.items() if k not in ENVELOPE}
        self.emit(str(ev), **fields)
        if ev == Ev.PASS_END and isinstance(fields.get("report"), dict):
            with contextlib.suppress(OSError):
                report.write_text(json.dumps(fields["report"], ensure_ascii=False, indent=2, default=str),
                                  encoding="utf-8")
        return True


class HarnessSink(SqliteSink):
    """The pass's sink; it can tell whether another connection committed to the file."""

    def data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def digest(self) -> str:
        """Every output and every put, hashed: what the next pass must find."""
        h = hashlib.sha256()
        for table, order in (("outputs", "key"), ("puts", "seq")):
            for row in self._conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):  # noqa: S608 - fixed names
                h.update(repr(row).encode("utf-8"))
        return h.hexdigest()


@dataclass(frozen=True)
class Seal:
    """How a pass left its run's records: the next pass checks it found them so."""

    ledger_size: int
    ledger_sha: str
    sink_digest: str


_SEALS: dict[Path, Seal] = {}


def forget(run_dir: Path) -> None:
    """A fresh run: no earlier pass to compare with."""
    _SEALS.pop(Path(run_dir).resolve(), None)


def seal_of(run_dir: Path) -> Seal | None:
    """How the last pass of ``run_dir`` left its records (None: no pass sealed them in this process)."""
    return _SEALS.get(Path(run_dir).resolve())


def _sha(path: Path) -> tuple[int, str]:
    data = path.read_bytes() if path.exists() else b""
    return len(data), hashlib.sha256(data).hexdigest()


class RecordsWatch:
    """The checks of one pass's records: as the last pass left them at its start, only the harness's at its end."""

    def __init__(self, run: RunDir, pass_no: int) -> None:
        self.run, self.pass_no = run, pass_no
        self.foreign: list[str] = []
        self._check_seal()
        self._start_size = run.ledger.stat().st_size if run.ledger.exists() else 0
        self._sink_ino = 0
        self._data_version = 0

    def opened(self, sink: HarnessSink) -> None:
        """The harness's sink connection is open: from now on, any other writer shows."""
        self._sink_ino = self.run.sink.stat().st_ino
        self._data_version = sink.data_version()

    def _check_seal(self) -> None:
        seal = _SEALS.get(self.run.path.resolve())
        if seal is None:
            return
        if _sha(self.run.ledger) != (seal.ledger_size, seal.ledger_sha):
            self.foreign.append(f"before pass {self.pass_no}: the ledger changed since the last pass ended")
        if self.run.sink.exists():
            sink = HarnessSink(self.run.sink)
            try:
                if sink.digest() != seal.sink_digest:
                    self.foreign.append(f"before pass {self.pass_no}: the sink changed since the last pass ended")
            finally:
                sink.close()

    def closing(self, ledger: HarnessLedger, sink: HarnessSink) -> None:
        """The pass is over (both still open): compare, then seal what the next pass must find."""
        with contextlib.suppress(OSError):
            with self.run.ledger.open("rb") as fh:
                fh.seek(self._start_size)
                tail = fh.read()
            if tail != bytes(ledger.written) or self.run.ledger.stat().st_ino != ledger.inode():
                self.foreign.append(f"pass {self.pass_no}: the ledger holds lines the harness did not write")
        try:
            replaced = self.run.sink.stat().st_ino != self._sink_ino
        except OSError:
            replaced = True
        if replaced or sink.data_version() != self._data_version:
            self.foreign.append(f"pass {self.pass_no}: something other than the harness wrote to the sink")
        size, sha = _sha(self.run.ledger)
        _SEALS[self.run.path.resolve()] = Seal(size, sha, sink.digest())
