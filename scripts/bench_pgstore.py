"""What the PostgreSQL store costs against SQLite (a benchmark, not a test): puts, fenced puts and claims.

On one machine, one client: ``--puts`` sink writes (a first write each, 4 chunks of 8-float vectors) through
:class:`batchlab.sink.SqliteSink` (the run directory's WAL file) and :class:`batchlab.pgsink.PgSink` (a
throwaway local server started as the tests start it (`batchlab.teach.pglocal`), ``fsync=off`` like theirs, or ``--store URL``), the
same through a lease's fence (SQLite's where its sink takes a guard), and ``--shards`` claims+finishes
through each lease store. Median of ``--repeat`` runs, interleaved; the figures as one JSON line
(operations per second, and PostgreSQL / SQLite ratios).

    python scripts/bench_pgstore.py                       # 300 puts, 100 shards, median of 3
    python scripts/bench_pgstore.py --store postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from batchlab.documents import Document
from batchlab.leases import SqliteLeaseStore
from batchlab.pgleases import PgLeaseStore
from batchlab.pgsink import PgSink
from batchlab.pgstore import PgConnection
from batchlab.sink import SqliteSink
from batchlab.teach.pglocal import pg_server

DOC = Document(id="d", content="text", source="s")
CHUNKS, VECTORS = ["c"] * 4, [[0.125] * 8] * 4


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with pg_server() as pg:
        yield pg.url


def rate(n: int, work: Callable[[int], None]) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        work(i)
    return n / (time.perf_counter() - t0)


def sinks(url: str, folder: Path, batch: str, fenced: bool) -> dict[str, Any]:
    """A SQLite and a PostgreSQL sink for ``batch``, each behind a held lease's fence when ``fenced``."""
    lite_leases, pg_db = SqliteLeaseStore(folder / "sink.sqlite"), PgConnection(url)
    pg_leases = PgLeaseStore(pg_db)
    out: dict[str, Any] = {}
    for name, leases in (("sqlite", lite_leases), ("postgresql", pg_leases)):
        guard = None
        if fenced:
            leases.create_shards(batch, 1)
            lease = leases.claim(batch, "bench", now=time.time(), lease_s=3600.0)
            guard = leases.fence(lease, time.time)  # type: ignore[arg-type]
        if name == "postgresql":
            out[name] = PgSink(pg_db, batch, guard=guard)
        elif not fenced:
            out[name] = SqliteSink(folder / "sink.sqlite")
        elif "guard" in inspect.signature(SqliteSink).parameters:  # the leases branch's fenced SQLite sink
            out[name] = SqliteSink(folder / "sink.sqlite", guard=guard)  # type: ignore[call-arg]
    return out


def claims(store: Any, batch: str, n: int) -> float:
    store.create_shards(batch, n)

    def one(_: int) -> None:
        store.finish(store.claim(batch, "bench", now=time.time(), lease_s=60.0))

    return rate(n, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puts", type=int, default=300)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", default=None, help="an existing server's URL (default: start a throwaway one)")
    args = parser.parse_args()
    runs: dict[str, list[float]] = {}
    with server(args.store) as url, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for fenced in (False, True):
                folder = Path(tmp) / f"{r}-{fenced}"
                folder.mkdir()
                for name, sink in sinks(url, folder, f"bench-{uuid.uuid4().hex[:8]}", fenced).items():
                    kind = f"{'fenced_' if fenced else ''}puts_per_s_{name}"
                    runs.setdefault(kind, []).append(
                        rate(args.puts, lambda i, s=sink: s.put(f"k{i}", DOC, CHUNKS, VECTORS)))
            lite = SqliteLeaseStore(Path(tmp) / f"claims{r}.sqlite")
            runs.setdefault("claims_per_s_sqlite", []).append(claims(lite, "b", args.shards))
            runs.setdefault("claims_per_s_postgresql", []).append(claims(PgLeaseStore(PgConnection(url)),
                                                                          f"c-{uuid.uuid4().hex[:8]}", args.shards))
    med = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    for what in ("puts_per_s", "fenced_puts_per_s", "claims_per_s"):
        if f"{what}_sqlite" in med:
            med[f"{what}_ratio_pg_to_sqlite"] = round(med[f"{what}_postgresql"] / med[f"{what}_sqlite"], 2)
    print(json.dumps({"puts": args.puts, "shards": args.shards, "repeat": args.repeat, **med}))


if __name__ == "__main__":
    main()
