"""The worker lanes on the projector: a pure HTML renderer and a small ipywidgets view over :mod:`.lanes`.

``lanes_html`` is a plain function (tested without widgets; the ``data-*`` attributes are what tests assert on).
:class:`FleetLanesView` polls a fleet's run directory from a daemon thread (five times a second by default)
and shows one lane per worker; it only displays what :class:`~.lanes.LaneFold` folds (docs/design.md,
principle 6). Notebook 08 shows it while its fleet runs and a worker is killed or frozen::

    from batchlab.teach.dashboard.fleetview import FleetLanesView
    view = FleetLanesView(run_dir, exits=lambda: fleet.exits)
    view.start()
    view        # shows it; view.stop() when done
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...rundir import RunDir
from .lanes import EXITED, HOLDING, IDLE, LOST, REFUSED, Lane, LaneFold, is_fleet, shard_states, worker_names

LANE_LABELS = {HOLDING: "持有租约 holding", IDLE: "空闲 idle", LOST: "租约被接管 lost",
               REFUSED: "写入被拒 refused", EXITED: "已退出 exited"}
LANE_COLORS = {HOLDING: "#2563eb", IDLE: "#6b7280", LOST: "#dc2626", REFUSED: "#b45309", EXITED: "#374151"}

LANES_CSS = """
<style>
.bl-lanes { font-size: 20px; width: 100%; border-collapse: collapse; }
.bl-lanes td, .bl-lanes th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
.bl-lane-state { display: inline-block; color: #fff; border-radius: 6px; padding: 1px 10px; font-weight: 700; }
.bl-lane-note { color: #555; font-size: 17px; }
</style>
"""


def _state_badge(lane: Lane) -> str:
    label = LANE_LABELS.get(lane.state, lane.state)
    if lane.state == EXITED:
        label += f" ({'SIGKILL' if lane.exit_code == -9 else f'exit {lane.exit_code}'})"
    color = "#dc2626" if lane.killed else LANE_COLORS.get(lane.state, "#444")
    return f'<span class="bl-lane-state" style="background:{color}">{html.escape(label)}</span>'


def _also(lane: Lane) -> str:
    """The shards a worker holds beside its own: rescues of dead workers' expired shards."""
    return "".join(f'<br><span class="bl-lane-note">+ {html.escape(a)} 接管中 (rescue)</span>' for a in lane.also)


def lanes_html(lanes: Sequence[Lane]) -> str:
    """One row per worker: state, shard, lease (token, seconds left), commits, shards done, takeovers, refusals."""
    if not lanes:
        return '<div class="bl-lanes-empty bl-lane-note">不是多工作进程的运行 (not a fleet run): 没有租约表。</div>'
    head = ("<tr><th>工作进程 worker</th><th>状态 state</th><th>分片 shard</th><th>租约 lease</th>"
            "<th>提交 commits</th><th>完成分片 done</th><th>接管 takeovers</th><th>被拒 refused</th></tr>")
    rows = []
    for lane in lanes:
        lease = (f"token <b>{lane.token}</b> · {lane.expires_in_s:+.1f} s" if lane.token is not None
                 and lane.expires_in_s is not None else "—")
        moves = [f"⇐ {html.escape(t)}" for t in lane.took_over] + [f"✖ {html.escape(t)}" for t in lane.lost]
        rows.append(
            f'<tr class="bl-lane" data-owner="{html.escape(lane.owner)}" data-state="{lane.state}" '
            f'data-shard="{lane.shard or ""}" data-token="{"" if lane.token is None else lane.token}" '
            f'data-commits="{lane.commits}" data-lost="{len(lane.lost)}" data-took="{len(lane.took_over)}" '
            f'data-refused="{lane.refused}" data-killed="{str(lane.killed).lower()}">'
            f"<td><b>{html.escape(lane.owner)}</b></td><td>{_state_badge(lane)}</td>"
            f"<td>{html.escape(lane.shard or '—')}{_also(lane)}</td><td>{lease}</td><td><b>{lane.commits}</b></td>"
            f"<td>{lane.finished}/{lane.passes}</td><td class=\"bl-lane-note\">{'<br>'.join(moves) or '—'}</td>"
            f"<td>{lane.refused}</td></tr>")
    return f'{LANES_CSS}<table class="bl-lanes">{head}{"".join(rows)}</table>'


class FleetLanesView:
    """An ipywidgets HTML panel with the lanes of one fleet's run directory, refreshed from a daemon thread.

    ``exits`` (optional) returns the workers' exit codes as the fleet knows them (``lambda: fleet.exits``),
    so a SIGKILLed worker's lane says so; ``clock`` is injected for the lease's seconds left.
    """

    def __init__(self, run_dir: str | Path, *, batch_id: str | None = None, refresh_s: float = 0.2,
                 exits: Callable[[], Mapping[str, int | None]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        import ipywidgets as w

        self.run_dir = Path(run_dir)
        if batch_id is None:
            from ...runspec import read_spec

            batch_id = read_spec(self.run_dir).batch_id
        self.batch_id = batch_id
        self.refresh_s = refresh_s
        self._exits = exits or dict
        self._clock = clock
        self.fold = LaneFold(RunDir(self.run_dir).ledger)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.lanes: list[Lane] = []
        self.widget = w.HTML()
        self.widget.add_class("bl-lanes-box")
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def refresh(self) -> list[Lane]:
        """Fold what the ledger gained, read the lease table, render; the lanes shown."""
        with self._lock:
            self.fold.feed()
            shards = shard_states(self.run_dir, self.batch_id) if is_fleet(self.run_dir) else []
            self.lanes = self.fold.lanes(shards, now=self._clock(), exits=self._exits(),
                                         workers=worker_names(self.run_dir)) if shards else []
            self.widget.value = lanes_html(self.lanes)
            return self.lanes

    def start(self) -> None:
        """Refresh in the background until :meth:`stop` (the kernel stays free for the next cell)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="batchlab-lanes", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the projector alive; the error is shown by the caller
                self.last_error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> list[Lane]:
        """Stop refreshing, then render once more (the final lanes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.refresh()


def show_lanes(run_dir: str | Path, **kwargs: Any) -> FleetLanesView:
    """Display the lanes of a fleet's run directory and keep them fresh (e.g. while `batchlab run --workers 3`
    runs in a terminal on the same directory); ``view.stop()`` ends the refresher."""
    from IPython.display import display

    view = FleetLanesView(run_dir, **kwargs)
    display(view)
    view.start()
    return view
