"""What the dashboard draws over time, folded from the ledger: the completion curve, its markers, the resources.

Apart from :class:`~.model.DashboardModel` (which starts and kills workers) because it is a pure
fold: ledger events in, the states of :class:`~.board.StateBoard`, a completion series, crash and
resume markers and the latest resource sample out. A test feeds it events without starting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...documents import Batch
from ...ledger import CRASH_EVENTS, PASS_OVER, RESOURCE_EVENT, Ev
from ...resources import RESOURCE_FIELDS
from .board import MANUAL_KILL, Marker, StateBoard


class Timeline:
    """One batch's board, completion series, markers and latest resource sample, folded from its ledger."""

    def __init__(self, batch: Batch | None, *, t_start: float | None, clock: Callable[[], float]) -> None:
        self.board = StateBoard(batch.documents if batch is not None else [])
        self.t_start = t_start
        self._clock = clock
        self.series: list[tuple[float, int]] = [(0.0, 0)] if t_start is not None else []
        self.markers: list[Marker] = []
        self.resources: dict[str, Any] | None = None
        #: The running pass wrote its last event (nothing more is sampled: see the model's ``_sample``).
        self.pass_over = False

    def rel(self, t: float) -> float:
        """Seconds since the batch started."""
        return max(t - (self.t_start if self.t_start is not None else t), 0.0)

    def new_pass(self, pass_no: int, t0: float) -> None:
        """A pass started at ``t0``; a resume gets its marker."""
        self.pass_over = False
        if pass_no > 1:
            self.markers.append(Marker(self.rel(t0), "resume", f"恢复 resume (pass {pass_no})"))

    def fold(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Fold ledger events in: the board's states, a point per change of the finished count, the markers."""
        before = self.board.finished()
        for ev in events:
            self.board.apply(ev)
            kind = ev.get("ev")
            t = float(ev.get("t", self._clock()))
            if kind in PASS_OVER:
                self.pass_over = True
            elif kind == RESOURCE_EVENT:
                self.resources = {k: ev[k] for k in RESOURCE_FIELDS if k in ev}
            if kind in CRASH_EVENTS or kind == Ev.TIMEOUT:
                self.markers.append(Marker(self.rel(t), "crash", _marker_label(ev)))
            elif kind == Ev.OUTAGE:
                down = ev.get("state") == "down"
                self.markers.append(Marker(self.rel(t), "outage",
                                           "外部模型断开 outage" if down else "连接恢复 reconnected"))
            after = self.board.finished()
            if after != before:
                self.series.append((self.rel(t), after))
                before = after


def _marker_label(ev: Mapping[str, Any]) -> str:
    """What the completion plot calls an interruption."""
    if ev.get("ev") == Ev.CRASH:
        return f"崩溃 crash ({ev.get('kind')})"
    if ev.get("ev") == Ev.TIMEOUT:
        return "超时 timeout"
    return "手动崩溃 Crash now" if ev.get("kind") == MANUAL_KILL else "随机崩溃 random kill"
