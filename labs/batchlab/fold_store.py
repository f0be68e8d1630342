"""Where the metric fold keeps its per-key state: in memory for the lesson's sizes, on disk past a threshold.

The metrics (:mod:`batchlab.metric_fold`) read a run once, line by line, but some of what they
remember grows with the batch: the valid identities of the input (to count each once), the puts
of the sink (who was committed before which pass), each document's first dispatch until its
commit, and one latency per commit. At a million documents those are a million keys. Everything
here lives in one scratch SQLite database: ``:memory:`` below :data:`SPILL_KEYS`, a temporary file
above it (deleted on close), so the figures come from the same SQL either way. The two hot maps
(first dispatch, latencies) start as Python structures and move into that database when they pass
the threshold (:class:`SpillMap`, :class:`Latencies`): fast for 120 documents, flat for a million.
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from itertools import islice, repeat
from pathlib import Path

#: Keys a hot map holds in Python before it moves into the scratch database (about 10 MB of dict).
SPILL_KEYS = 50_000
#: SQLite's page cache of the scratch database, in KiB: the largest part of the fold's memory once it is on disk
#: (16 MB peaked the metrics of 100 000 documents at 52 MB, 4 MB at 38 MB, no slower: the pages are in the OS cache).
CACHE_KIB = 4_000
#: Spilled latencies kept in a list until this many, then written with one ``executemany`` (was a statement each).
PENDING = 4096

_SCHEMA = """
CREATE TABLE idents (ident TEXT PRIMARY KEY, doc_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE puts (seq INTEGER PRIMARY KEY, ident TEXT NOT NULL, pass INTEGER NOT NULL, upgrade INTEGER NOT NULL);
CREATE TABLE dispatched (pass INTEGER NOT NULL, ident TEXT NOT NULL, t REAL NOT NULL, PRIMARY KEY (pass, ident))
    WITHOUT ROWID;
CREATE TABLE latencies (pass INTEGER NOT NULL, v REAL NOT NULL);
"""


class FoldStore:
    """The scratch database of one fold: ``:memory:``, or a temporary file in ``folder`` (deleted on close)."""

    def __init__(self, *, on_disk: bool, folder: str | Path | None = None, spill_keys: int = SPILL_KEYS) -> None:
        self.on_disk = on_disk
        self.spill_keys = spill_keys
        self._path: str | None = None
        if on_disk:
            fd, self._path = tempfile.mkstemp(prefix="metrics-fold-", suffix=".sqlite",
                                              dir=str(folder) if folder is not None else None)
            os.close(fd)
        self.db = sqlite3.connect(self._path or ":memory:", isolation_level=None, uri=True)
        # scratch data: no journal, no fsync; a crash loses only this file, which nobody reads again
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              f"PRAGMA cache_size=-{CACHE_KIB}; PRAGMA temp_store=FILE;" + _SCHEMA)
        self.db.execute("BEGIN")

    def close(self) -> None:
        self.db.close()
        if self._path is not None:
            Path(self._path).unlink(missing_ok=True)
            self._path = None

    def __enter__(self) -> FoldStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_ident(self, ident: str, doc_id: str) -> bool:
        """Record a valid identity of the input; True the first time it is seen."""
        cur = self.db.execute("INSERT OR IGNORE INTO idents VALUES (?, ?)", (ident, doc_id))
        return cur.rowcount == 1

    def add_idents(self, pairs: Sequence[tuple[str, str]]) -> list[int]:
        """Record ``(ident, doc_id)`` pairs met in this order: the positions of those whose identity is new.

        :meth:`add_ident` for a block of the input, in two statements instead of one a document.
        """
        first: dict[str, int] = {}
        for i, (ident, _) in enumerate(pairs):
            first.setdefault(ident, i)
        marks = ",".join("?" * len(first))
        known = {row[0] for row in self.db.execute(f"SELECT ident FROM idents WHERE ident IN ({marks})", list(first))}
        new = [i for ident, i in first.items() if ident not in known]
        self.db.executemany("INSERT INTO idents VALUES (?, ?)", (pairs[i] for i in new))
        return new

    def index_puts(self) -> None:
        """Called once every put is in: the per-key queries below look puts up by identity."""
        self.db.execute("CREATE INDEX puts_ident ON puts (ident, pass)")

    def committed_before(self, ident: str, pass_no: int) -> bool:
        return self.db.execute("SELECT 1 FROM puts WHERE ident = ? AND pass < ? LIMIT 1",
                               (ident, pass_no)).fetchone() is not None


class SpillMap:
    """``ident -> first dispatch time`` of one pass: a dict, moved to the store's table past its threshold."""

    def __init__(self, store: FoldStore, pass_no: int) -> None:
        self._store = store
        self._pass = pass_no
        #: the dict itself while not spilled (the fold's loop uses it directly while no call can make it spill)
        self.mem: dict[str, float] = {}
        self.spilled = False

    def setdefault(self, ident: str, t: float) -> None:
        if not self.spilled:
            self.mem.setdefault(ident, t)
            if len(self.mem) > self._store.spill_keys:
                self._store.db.executemany("INSERT INTO dispatched VALUES (?, ?, ?)",
                                           ((self._pass, k, v) for k, v in self.mem.items()))
                self.mem.clear()
                self.spilled = True
            return
        self._store.db.execute("INSERT OR IGNORE INTO dispatched VALUES (?, ?, ?)", (self._pass, ident, t))

    def pop(self, ident: str, default: None = None) -> float | None:
        """The first dispatch of ``ident``, forgotten (None when there is none); ``default``: as ``dict.pop``'s."""
        if not self.spilled:
            return self.mem.pop(ident, None)
        row = self._store.db.execute("DELETE FROM dispatched WHERE pass = ? AND ident = ? RETURNING t",
                                     (self._pass, ident)).fetchone()
        return float(row[0]) if row else None


class Latencies:
    """Every pass's latencies: ``array('d')`` per pass, moved to the store's table past its threshold.

    Percentiles are exact either way, with :func:`batchlab.contract.percentile`'s linear
    interpolation: in memory by sorting, on disk by fetching the two ranks from an ordered query.
    """

    def __init__(self, store: FoldStore) -> None:
        self._store = store
        self._mem: dict[int, array[float]] = {}
        self._count: dict[int, int] = {}
        self._pending: list[tuple[int, float]] = []  # spilled, not written yet: one executemany per PENDING
        self._indexed: set[str] = set()
        self.spilled = False

    def add(self, pass_no: int, value: float) -> None:
        self._count[pass_no] = self._count.get(pass_no, 0) + 1
        if self.spilled:
            self._pending.append((pass_no, value))
            if len(self._pending) >= PENDING:
                self._flush()
            return
        self._mem.setdefault(pass_no, array("d")).append(value)
        if sum(self._count.values()) > self._store.spill_keys:
            self._store.db.executemany("INSERT INTO latencies VALUES (?, ?)",
                                       ((p, v) for p, vs in self._mem.items() for v in vs))
            self._mem.clear()
            self.spilled = True

    def extend(self, pass_no: int, values: Sequence[float]) -> None:
        """:meth:`add` each of ``values`` in order, at once while they cannot make the values spill."""
        if not values:
            return
        if self.spilled:
            self._count[pass_no] = self._count.get(pass_no, 0) + len(values)
            self._pending.extend(zip(repeat(pass_no), values))
            if len(self._pending) >= PENDING:
                self._flush()
        elif sum(self._count.values()) + len(values) > self._store.spill_keys:
            for value in values:  # the one call that spills them
                self.add(pass_no, value)
        else:
            self._count[pass_no] = self._count.get(pass_no, 0) + len(values)
            self._mem.setdefault(pass_no, array("d")).extend(values)

    def _flush(self) -> None:
        if self._pending:
            self._store.db.executemany("INSERT INTO latencies VALUES (?, ?)", self._pending)
            self._pending.clear()

    def _index(self, pass_no: int | None) -> None:
        """Before a percentile on disk: every value written, then the index it walks (each made once, when first needed).

        Without them each percentile sorted the whole table (six sorts of a million values, about 8 s of CPU at
        a million documents); with them each sort is made once and a rank is read by walking an index. The
        run's own index (``v``) is made only when the latencies are of more than one pass (see :meth:`percentile`).
        """
        self._flush()
        name, columns = ("latencies_pass_v", "pass, v") if pass_no is not None else ("latencies_v", "v")
        if name not in self._indexed:
            self._store.db.execute(f"CREATE INDEX {name} ON latencies ({columns})")
            self._indexed.add(name)

    def count(self, pass_no: int | None = None) -> int:
        return sum(self._count.values()) if pass_no is None else self._count.get(pass_no, 0)

    def values(self, pass_no: int | None = None) -> Iterator[float]:
        """The latencies of one pass (or all, pass by pass), in commit order."""
        if not self.spilled:
            for p in sorted(self._mem) if pass_no is None else [pass_no]:
                yield from self._mem.get(p, ())
            return
        self._flush()
        where, args = ("", ()) if pass_no is None else ("WHERE pass = ?", (pass_no,))
        for (v,) in self._store.db.execute(f"SELECT v FROM latencies NOT INDEXED {where} ORDER BY pass, rowid", args):
            yield float(v)

    def sample(self, pass_no: int, step: int) -> list[float]:
        """Every ``step``-th latency of a pass in commit order, from its first (on disk: the rows skipped in C)."""
        if not self.spilled:
            return [v for i, v in enumerate(self.values(pass_no)) if i % step == 0]
        self._flush()
        rows = self._store.db.execute("SELECT v FROM latencies NOT INDEXED WHERE pass = ? ORDER BY rowid", (pass_no,))
        return [float(v) for (v,) in islice(rows, 0, None, step)]

    def percentile(self, q: float, pass_no: int | None = None) -> float | None:
        """The q-th percentile of one pass's latencies (or all); None when there are none."""
        n = self.count(pass_no)
        if n == 0:
            return None
        if pass_no is None and len(held := [p for p, k in self._count.items() if k]) == 1:
            return self.percentile(q, held[0])  # the run's latencies are that pass's: the same values, one index
        pos = (n - 1) * q / 100.0
        lo, hi = math.floor(pos), math.ceil(pos)
        if not self.spilled:
            ordered = sorted(self.values(pass_no))
            a, b = ordered[lo], ordered[hi]
        else:
            self._index(pass_no)
            where, args = ("", ()) if pass_no is None else ("WHERE pass = ?", (pass_no,))
            rows = self._store.db.execute(f"SELECT v FROM latencies {where} ORDER BY v LIMIT ? OFFSET ?",
                                          (*args, hi - lo + 1, lo)).fetchall()
            a, b = float(rows[0][0]), float(rows[-1][0])
        return a + (b - a) * (pos - lo)
