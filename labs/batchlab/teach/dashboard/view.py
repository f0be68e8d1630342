"""The teacher dashboard: an ipywidgets view over :class:`batchlab.teach.dashboard.model.DashboardModel`.

The view only displays snapshots and forwards clicks (docs/design.md, principle 6): every
button calls one model action, so ``Button.click()`` in a test exercises the
real logic, and the model can be driven without widgets at all. While a worker
runs, a daemon thread polls the model about five times a second and pushes the
new snapshot into the widgets; the kernel stays free (a notebook cell can run
while the batch runs), and a click never waits for the worker.

Everything is sized for a projector: large fonts, count tiles, a thick progress
bar, and a completion plot drawn as SVG (no figure to re-render, nothing to
block). Usage in a notebook::

    from batchlab.teach.dashboard import Dashboard
    dash = Dashboard()
    dash            # shows it

``ipywidgets`` is imported when a dashboard is built, not when this module is
imported, so that ``batchlab``'s command line (which imports this module for
its ``dashboard`` verb) stays fast.
"""

from __future__ import annotations

import argparse
import html
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import KitError
from ...faults import CRASH_KINDS
from .board import ERROR, FINISHED, IDLE, KILLED, RUNNING, DashboardError, DashboardSettings, Snapshot
from .fleetview import FleetLanesView
from .model import DashboardModel
from .render import (
    CRASH_LABELS,
    CSS,
    completion_svg,
    counts_html,
    metrics_html,
    progress_text,
    resources_html,
    status_html,
)

#: How often the refresher polls the model while a worker runs (seconds).
REFRESH_S = 0.2
#: The outage toggle's two faces (blackboard step 3: "临时提高失败概率或断开外部模型").
DISCONNECT = "⚡ 断开外部模型 Disconnect model"
RECONNECT = "🔌 恢复连接 Reconnect"
#: 后续标记待补: one more pass that redoes the degraded documents in full once the service is healthy.
BACKFILL = "⬆ 补齐降级文档 (backfill)"

# -- the widget view ---------------------------------------------------------------------


class Dashboard:
    """The teacher's dashboard: controls, four buttons, live progress, counts, metrics and plot.

    ``model`` is a :class:`DashboardModel` (one is built from ``model_kwargs`` if
    not given). Each button calls one model action; a background thread polls
    the model while a worker runs and renders each snapshot. ``render`` can be
    called any time (tests call it after ``model.wait()``).
    """

    def __init__(self, model: DashboardModel | None = None, *, refresh_s: float = REFRESH_S,
                 fleet_dir: str | Path | None = None, **model_kwargs: Any) -> None:
        import ipywidgets as w

        self.model = model or DashboardModel(**model_kwargs)
        self.refresh_s = refresh_s
        self._refresher: threading.Thread | None = None
        self._refresher_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self.last_error: str | None = None
        s = self.model.settings
        style = {"description_width": "300px"}

        def wide() -> Any:
            return w.Layout(width="100%", max_width="860px")

        self.documents = w.IntSlider(value=s.documents, min=20, max=1000, step=10, description="文档数 documents",
                                     layout=wide(), style=style, continuous_update=False)
        self.fault_rate = w.IntSlider(value=round(s.fault_rate * 100), min=1, max=5, step=1,
                                      description="故障率 fault rate (%)", layout=wide(), style=style,
                                      continuous_update=False)
        self.concurrency = w.IntSlider(value=s.concurrency, min=1, max=32, step=1, description="并发 concurrency",
                                       layout=wide(), style=style, continuous_update=False)
        self.crash = w.Dropdown(options=[(CRASH_LABELS[k], k) for k in CRASH_KINDS], value=s.crash,
                                description="计划崩溃 crash kind", layout=wide(), style=style)
        for control in (self.documents, self.fault_rate, self.concurrency, self.crash):
            control.observe(self._on_setting, names="value")

        def button(text: str, style_name: str, css: str, handler: Callable[[Any], None]) -> Any:
            b = w.Button(description=text, button_style=style_name, layout=w.Layout(flex="1 1 auto", width="auto", height="58px", margin="4px"))
            b.add_class(css)
            b.on_click(handler)
            return b

        self.run_button = button("▶ 运行 Run", "primary", "bl-run", lambda _: self._act(self.model.run))
        self.crash_button = button("✖ 立即崩溃 Crash now", "danger", "bl-crash", lambda _: self._act(self.model.crash_now))
        self.resume_button = button("⟳ 恢复 Resume", "success", "bl-resume", lambda _: self._act(self.model.resume))
        self.reset_button = button("⟲ 重置 Reset", "warning", "bl-reset", lambda _: self._act(self.model.reset))
        self.outage_button = button(DISCONNECT, "", "bl-outage",
                                    lambda _: self._act(lambda: self.model.set_outage(not self.model.outage)))
        self.backfill_button = button(BACKFILL, "", "bl-backfill", lambda _: self._act(self.model.backfill))

        self.title = w.HTML(CSS + '<div class="bl-title">批量断点续传 · 教师演示面板 (teacher dashboard)</div>')
        self.status = w.HTML()
        self.status.add_class("bl-status-box")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="100%", height="40px"))
        self.progress.add_class("bl-progress")
        self.progress_label = w.HTML()
        self.progress_label.add_class("bl-progress-label")
        self.counts = w.HTML()
        self.counts.add_class("bl-counts")
        self.resources = w.HTML()
        self.resources.add_class("bl-resources-box")
        self.metrics = w.HTML()
        self.metrics.add_class("bl-metrics-box")
        self.plot = w.HTML()
        self.plot.add_class("bl-plot-box")
        #: ``fleet_dir``: a fleet's run directory (``batchlab run --workers 3`` in a terminal): one lane per worker.
        self.fleet_lanes = FleetLanesView(fleet_dir, refresh_s=refresh_s) if fleet_dir is not None else None
        self.widget = w.VBox([
            self.title,
            self.documents, self.fault_rate, self.concurrency, self.crash,
            w.HBox([self.run_button, self.crash_button, self.resume_button, self.reset_button, self.outage_button,
                    self.backfill_button],
                   layout=w.Layout(width="100%", max_width="1000px", flex_flow="row wrap")),
            self.status, self.progress_label, self.progress, self.counts, self.resources, self.plot, self.metrics,
            *([self.fleet_lanes.widget] if self.fleet_lanes is not None else []),
        ], layout=w.Layout(width="100%"))
        self.widget.add_class("batchlab-dashboard")
        self.render(self.model.snapshot())
        if self.fleet_lanes is not None:
            self.fleet_lanes.start()  # the fleet runs on its own: its lanes refresh whatever the model does

    # -- display ----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def render(self, snap: Snapshot | None = None) -> Snapshot:
        """Show a snapshot (the model's current one by default) in every widget."""
        snap = snap or self.model.snapshot()
        with self._render_lock:
            error = f'<br><span style="color:#dc2626">⚠ {html.escape(self.last_error)}</span>' if self.last_error else ""
            self.status.value = status_html(snap) + error
            self.progress.max = max(snap.total, 1)
            self.progress.value = snap.finished
            self.progress.bar_style = {RUNNING: "info", KILLED: "danger", FINISHED: "success",
                                       ERROR: "danger"}.get(snap.phase, "")
            self.progress_label.value = progress_text(snap)
            self.counts.value = counts_html(snap)
            self.resources.value = resources_html(snap)
            self.metrics.value = metrics_html(snap)
            self.plot.value = completion_svg(snap)
            self.run_button.disabled = snap.live
            self.crash_button.disabled = not snap.live
            self.resume_button.disabled = snap.live or snap.phase == IDLE
            self.reset_button.disabled = snap.phase == IDLE and not snap.live
            self.outage_button.disabled = snap.run_dir is None
            self.outage_button.description = RECONNECT if snap.outage else DISCONNECT
            self.outage_button.button_style = "info" if snap.outage else ""
            self.backfill_button.disabled = snap.live or snap.phase == IDLE or snap.outage
        return snap

    # -- controls -> model -------------------------------------------------------------

    def _on_setting(self, _change: Any) -> None:
        try:
            self.model.configure(documents=int(self.documents.value), fault_rate=self.fault_rate.value / 100,
                                 concurrency=int(self.concurrency.value), crash=str(self.crash.value))
            self.last_error = None
        except KitError as exc:
            self.last_error = exc.message
        self.render()

    def _act(self, action: Callable[[], Any]) -> None:
        """Run one model action for a click; a refused action is shown, never raised into the kernel."""
        try:
            action()
            self.last_error = None
        except KitError as exc:
            self.last_error = exc.message
        except Exception as exc:  # noqa: BLE001 - a click must never leave a traceback on the projector
            self.last_error = f"{type(exc).__name__}: {exc}"
        snap = self.render(self.model.poll())
        if snap.live:
            self._ensure_refresher()

    def _ensure_refresher(self) -> None:
        with self._refresher_lock:
            if self._refresher is not None and self._refresher.is_alive():
                return
            self._refresher = threading.Thread(target=self._refresh_loop, name="batchlab-dashboard", daemon=True)
            self._refresher.start()

    def _refresh_loop(self) -> None:
        """Poll and render until no worker runs any more, then render once more and stop."""
        stop = threading.Event()
        while True:
            try:
                snap = self.render(self.model.poll())
            except Exception as exc:  # noqa: BLE001 - keep the projector alive
                self.last_error = f"refresh: {type(exc).__name__}: {exc}"
                return
            if not snap.live:
                return
            stop.wait(self.refresh_s)

    def wait(self, timeout: float = 120.0) -> Snapshot:
        """Wait for the running pass to end, then render (for scripted demos and tests)."""
        snap = self.model.wait(timeout=timeout)
        return self.render(snap)

    def close(self) -> None:
        """Kill any worker, remove the temporary run directory, and show the empty dashboard."""
        if self.fleet_lanes is not None:
            self.fleet_lanes.stop()
        self.model.close()
        self.render()


def show(**kwargs: Any) -> Dashboard:
    """Build a dashboard (keyword arguments go to :class:`DashboardModel`) and display it."""
    from IPython.display import display

    dash = Dashboard(**kwargs)
    display(dash)
    return dash


# -- command line: ``batchlab dashboard`` ---------------------------------------------------


def notebook_path() -> Path:
    from ...paths import kit_root

    return kit_root() / "notebooks" / "teacher_demo.ipynb"


def lab_command(notebook: Path) -> list[str]:
    """The command that opens the teacher notebook in JupyterLab."""
    return [sys.executable, "-m", "jupyter", "lab", str(notebook)]


def _cmd_dashboard(args: argparse.Namespace) -> int:
    notebook = notebook_path()
    if not notebook.exists():
        raise KitError(f"the teacher notebook is missing: {notebook}", code="file_not_found",
                       details={"path": str(notebook)},
                       hints=["Run this from the kit's repository (or set BATCHLAB_ROOT)."])
    cmd = lab_command(notebook)
    if args.print_command:
        print(" ".join(cmd))
        return 0
    return subprocess.call(cmd)


def add_parser(subparsers: Any) -> None:
    """``batchlab dashboard``: open ``notebooks/teacher_demo.ipynb`` in JupyterLab."""
    p = subparsers.add_parser("dashboard", help="open the teacher dashboard notebook in JupyterLab")
    p.add_argument("--print-command", action="store_true", help="print the command instead of running it")
    p.set_defaults(func=_cmd_dashboard)


__all__ = ["Dashboard", "DashboardError", "DashboardModel", "DashboardSettings", "show", "completion_svg",
           "counts_html", "metrics_html", "status_html", "progress_text", "add_parser"]
