"""The dashboard's worker lanes: one lane per worker of a fleet's run directory, in plain Python (no widgets).

When a run directory holds a batch shared by lease-holding workers (``batchlab run --workers N``, notebook 08),
the projector shows one lane per worker: the shard it holds now with the lease's fencing token and how long
until it expires, the documents it committed, the shards it finished, the shards taken over *from* it (it was
killed or frozen: its lease expired while it held a shard) and *by* it, and its put refused by the fence.

Everything comes from the two places the grader and the audit trust, never from the workers' own words:

* the **lease table** through :mod:`batchlab.leases`'s public API (``SqliteLeaseStore.shards``): who holds which
  shard now, with which token, until when;
* the **ledger**: each fleet pass starts with ``pass_start`` naming its shard, owner and token, its commits are
  ``sink_put`` events under its pass number, ``pass_end`` closes a pass that finished its shard, and a pass whose
  put the fence refused ends with ``stopped`` (``signal: stale_lease``).

A finished shard is never claimed again, so a pass whose shard was claimed again by another worker is a shard
lost by its owner (SIGKILL, SIGSTOP past its lease, or killed between its last commit and its ``finish``).
The fold is incremental (:meth:`LaneFold.feed`), so a view can poll it five times a second on a long ledger;
:func:`read_lanes` is the one-call form. Why apart from the model: docs/design.md principle 6 (the widget only
displays what this computes; tests need no widgets).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...leases import HELD, ShardState, SqliteLeaseStore
from ...ledger import Ev, parse_event
from ...rundir import RunDir

#: Lane states, as the renderer colours them.
HOLDING, IDLE, LOST, REFUSED, EXITED = "holding", "idle", "lost", "refused", "exited"


@dataclass(frozen=True)
class Lane:
    """One worker as the projector shows it."""

    owner: str
    state: str  #: holding | idle | lost (its shard taken over) | refused (a stale put stopped) | exited
    shard: str | None = None  #: ``"i/n"`` of the shard it holds now (lease table)
    token: int | None = None  #: the fencing token of that lease
    expires_in_s: float | None = None  #: seconds until that lease expires (negative: expired, not yet taken)
    commits: int = 0  #: sink puts of its passes
    passes: int = 0  #: shards it claimed (one pass each)
    finished: int = 0  #: passes that ended well (``pass_end``)
    lost: tuple[str, ...] = ()  #: shards taken over from it ("2/6 token 3 -> w1")
    took_over: tuple[str, ...] = ()  #: shards it took over from another worker
    refused: int = 0  #: its puts refused by the fence (stale token)
    exit_code: int | None = None  #: how its process ended, when the caller knows (``Fleet.exits``)
    #: other shards it holds now, beside ``shard`` ("5/6 token 3"): a rescue of a dead worker's expired shard,
    #: run beside its own pass (:class:`batchlab.workerproc.Rescuer`)
    also: tuple[str, ...] = ()

    @property
    def killed(self) -> bool:
        """Ended by a signal (SIGKILL from chaos, the notebook or a teacher), as far as the caller knows."""
        return self.exit_code is not None and self.exit_code < 0


@dataclass
class _Pass:
    owner: str
    shard: str
    token: int
    commits: int = 0
    ended: bool = False
    refused: bool = False


@dataclass
class LaneFold:
    """The ledger of a fleet's run folded pass by pass (see the module); feed it, then ask :meth:`lanes`."""

    ledger: Path
    passes: dict[int, _Pass] = field(default_factory=dict)
    _offset: int = 0

    def apply(self, event: Mapping[str, Any]) -> None:
        """One ledger event: a fleet pass's start, a commit, its end or its refusal; anything else is ignored."""
        ev, no = event.get("ev"), int(event.get("pass") or 0)
        if ev == Ev.PASS_START and event.get("owner"):
            self.passes[no] = _Pass(str(event["owner"]), str(event.get("shard")), int(event.get("token") or 0))
            return
        p = self.passes.get(no)
        if p is None:
            return
        if ev == Ev.SINK_PUT:
            p.commits += 1
        elif ev == Ev.PASS_END:
            p.ended = True
        elif ev == Ev.STOPPED and event.get("signal") == "stale_lease":
            p.refused = True

    def feed(self) -> int:
        """Fold the complete lines appended since the last call; how many events that was."""
        if not self.ledger.exists():
            return 0
        with self.ledger.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        n = 0
        for raw in data[:end].splitlines():
            if (event := parse_event(raw)) is not None:
                self.apply(event)
                n += 1
        return n

    def lanes(self, shards: list[ShardState], *, now: float, exits: Mapping[str, int | None] | None = None,
              workers: list[str] | None = None) -> list[Lane]:
        """One lane per worker: those that ran a pass, hold a lease, or are named in ``workers``/``exits``."""
        exits = dict(exits or {})
        owners = {p.owner for p in self.passes.values()} | {s.owner for s in shards if s.owner}
        owners |= set(workers or ()) | set(exits)
        return [self._lane(owner, shards, now, exits.get(owner)) for owner in sorted(owners, key=_worker_order)]

    def _lane(self, owner: str, shards: list[ShardState], now: float, exit_code: int | None) -> Lane:
        mine = [p for p in self.passes.values() if p.owner == owner]
        lost, took = [], []
        for p in mine:  # a finished shard is never claimed again: a later claim means its holder lost it
            later = [q for q in self.passes.values() if q.shard == p.shard and q.token > p.token]
            if later and (nxt := min(later, key=lambda q: q.token)).owner != owner:
                lost.append(f"{p.shard} token {p.token} -> {nxt.owner}")
            earlier = [q for q in self.passes.values() if q.shard == p.shard and q.token < p.token]
            if earlier and (prev := max(earlier, key=lambda q: q.token)).owner != owner:
                took.append(f"{p.shard} token {p.token} <- {prev.owner}")
        holding = [s for s in shards if s.owner == owner and s.state == HELD]
        held = holding[0] if holding else None
        refused = sum(p.refused for p in mine)
        state = (EXITED if exit_code is not None else REFUSED if refused and held is None
                 else HOLDING if held is not None else LOST if lost and not any(p.ended for p in mine[-1:])
                 else IDLE)
        return Lane(owner=owner, state=state, shard=f"{held.shard}/{held.n_shards}" if held else None,
                    token=held.token if held else None, expires_in_s=held.expires_at - now if held else None,
                    commits=sum(p.commits for p in mine), passes=len(mine), finished=sum(p.ended for p in mine),
                    lost=tuple(lost), took_over=tuple(took), refused=refused, exit_code=exit_code,
                    also=tuple(f"{s.shard}/{s.n_shards} token {s.token}" for s in holding[1:]))


def _worker_order(name: str) -> tuple[str, int, str]:
    """w2 before w10; a replacement ``w1.4`` right after the ``w1`` it replaced."""
    head, _, rest = name.partition(".")
    digits = "".join(ch for ch in head if ch.isdigit())
    return (head.rstrip("0123456789"), int(digits) if digits else 0, rest)


def is_fleet(run_dir: str | Path) -> bool:
    """Whether the run directory's sink holds a lease table with shards (read-only: nothing is created)."""
    sink = RunDir(Path(run_dir)).sink
    if not sink.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{sink}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leases'").fetchone()
        return row is not None and conn.execute("SELECT 1 FROM leases LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def shard_states(run_dir: str | Path, batch_id: str) -> list[ShardState]:
    """The lease table's rows (``SqliteLeaseStore.shards``); empty for a directory that is no fleet's."""
    if not is_fleet(run_dir):
        return []
    store = SqliteLeaseStore(RunDir(Path(run_dir)).sink)
    try:
        return store.shards(batch_id)
    finally:
        store.close()


def worker_names(run_dir: str | Path) -> list[str]:
    """The workers a fleet started (their logs under ``RUN_DIR/workers/``), claimed or not."""
    folder = Path(run_dir) / "workers"
    return sorted(p.stem for p in folder.glob("*.log")) if folder.is_dir() else []


def read_lanes(run_dir: str | Path, *, now: float, batch_id: str | None = None,
               exits: Mapping[str, int | None] | None = None) -> list[Lane]:
    """The lanes of a fleet's run directory in one call (an empty list for a single-pass run)."""
    if not is_fleet(run_dir):
        return []
    if batch_id is None:
        from ...runspec import read_spec

        batch_id = read_spec(run_dir).batch_id
    fold = LaneFold(RunDir(Path(run_dir)).ledger)
    fold.feed()
    return fold.lanes(shard_states(run_dir, batch_id), now=now, exits=exits, workers=worker_names(run_dir))
