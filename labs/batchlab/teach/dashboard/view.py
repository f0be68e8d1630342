"""The teacher dashboard: an ipywidgets view over :class:`batchlab.teach.dashboard.model.DashboardModel`.

The view only displays snapshots and forwards clicks (STYLE.md item 6): every
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
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...contract import DEGRADED, DONE, FAILED, PENDING, PROCESSING
from .model import (
    ERROR,
    FINISHED,
    IDLE,
    KILLED,
    RUNNING,
    DashboardError,
    DashboardModel,
    DashboardSettings,
    Snapshot,
)
from ...errors import KitError
from ...faults import CRASH_KINDS

#: How often the refresher polls the model while a worker runs (seconds).
REFRESH_S = 0.2

STATE_LABELS = {
    PENDING: "待处理 pending", PROCESSING: "处理中 processing", DONE: "完成 done",
    DEGRADED: "降级 degraded", FAILED: "失败 failed",
}
STATE_COLORS = {PENDING: "#6b7280", PROCESSING: "#2563eb", DONE: "#16a34a", DEGRADED: "#d97706", FAILED: "#dc2626"}
PHASE_LABELS = {IDLE: "空闲 idle", RUNNING: "运行中 running", KILLED: "已崩溃 killed",
                FINISHED: "已结束 finished", ERROR: "出错 error"}
PHASE_COLORS = {IDLE: "#6b7280", RUNNING: "#2563eb", KILLED: "#dc2626", FINISHED: "#16a34a", ERROR: "#b91c1c"}
CRASH_LABELS = {"none": "不崩溃 none", "during_call": "调用中 during_call", "after_commit": "提交后 after_commit",
                "random": "随机 random"}

CSS = """
<style>
.batchlab-dashboard { font-size: 20px; max-width: 1000px; }
.batchlab-dashboard .widget-label, .batchlab-dashboard .widget-readout,
.batchlab-dashboard .widget-inline-hbox .widget-label { font-size: 20px !important; line-height: 32px; }
.batchlab-dashboard .widget-slider, .batchlab-dashboard .widget-dropdown { height: 36px; }
.batchlab-dashboard .widget-dropdown select { font-size: 20px; height: 34px; }
.batchlab-dashboard .jupyter-button { font-size: 21px; font-weight: 600; border-radius: 8px; }
.batchlab-dashboard .widget-progress .progress { height: 34px; }
.bl-title { font-size: 30px; font-weight: 700; margin: 4px 0 8px 0; }
.bl-status { font-size: 20px; padding: 6px 0; }
.bl-phase { display: inline-block; color: #fff; border-radius: 6px; padding: 2px 12px; font-weight: 700; }
.bl-progress-text { font-size: 24px; font-weight: 600; }
.bl-tiles { display: flex; gap: 10px; flex-wrap: wrap; }
.bl-tile { flex: 1 1 120px; border-radius: 10px; padding: 6px 10px; color: #fff; text-align: center; }
.bl-tile .bl-n { font-size: 46px; font-weight: 800; line-height: 1.1; }
.bl-tile .bl-name { font-size: 17px; }
.bl-metrics { border-collapse: collapse; font-size: 21px; width: 100%; }
.bl-metrics td, .bl-metrics th { padding: 4px 12px; border-bottom: 1px solid #ddd; text-align: left; }
.bl-ok { color: #fff; background: #16a34a; font-weight: 700; text-align: center !important; }
.bl-bad { color: #fff; background: #dc2626; font-weight: 700; text-align: center !important; }
.bl-note { color: #555; font-size: 18px; }
</style>
"""


# -- pure HTML/SVG renderers (tested without widgets) ----------------------------------


def status_html(snap: Snapshot) -> str:
    """Phase badge, pass, worker pid (against the kernel's pid) and the model's last message."""
    color = PHASE_COLORS.get(snap.phase, "#444")
    worker = f"worker pid <b>{snap.pid}</b>" if snap.pid else "no worker running"
    passes = ", ".join(f"pass {p.pass_no}: {p.outcome} ({p.duration_s:.1f} s)" for p in snap.passes)
    return (
        f'<div class="bl-status" data-phase="{snap.phase}" data-pid="{snap.pid or ""}" data-kernel-pid="{os.getpid()}">'
        f'<span class="bl-phase" style="background:{color}">{html.escape(PHASE_LABELS.get(snap.phase, snap.phase))}'
        f"</span> &nbsp;pass {snap.pass_no} · {worker} · kernel pid {os.getpid()} · "
        f"{snap.elapsed_s:.1f} s<br>{html.escape(snap.message)}"
        + (f'<br><span class="bl-note">{html.escape(passes)}</span>' if passes else "")
        + "</div>"
    )


def progress_text(snap: Snapshot) -> str:
    return (f'<span class="bl-progress-text" data-finished="{snap.finished}" data-total="{snap.total}">'
            f"已处理完 (done + degraded + failed) {snap.finished} / {snap.total} · {snap.fraction * 100:.1f} %</span>")


def counts_html(snap: Snapshot) -> str:
    """One big tile per state, then retries and duplicate executions."""
    tiles = [(state, snap.counts[state], STATE_LABELS[state], STATE_COLORS[state]) for state in STATE_LABELS]
    tiles += [("retries", snap.retries, "重试 retries", "#7c3aed"),
              ("duplicates", snap.duplicates, "重复执行 duplicates", "#111827" if not snap.duplicates else "#dc2626")]
    cells = "".join(
        f'<div class="bl-tile" data-state="{key}" style="background:{color}">'
        f'<div class="bl-n">{value}</div><div class="bl-name">{html.escape(label)}</div></div>'
        for key, value, label, color in tiles)
    return f'<div class="bl-tiles">{cells}</div>'


def metrics_html(snap: Snapshot) -> str:
    """The metrics against the thresholds: green PASS, red FAIL; computed when a pass ends."""
    if not snap.metrics:
        return ('<div class="bl-metrics-empty bl-note">指标 (metrics) 在每一轮 (pass) 结束或崩溃后计算，'
                "与阈值 (thresholds) 对照。</div>")
    rows = []
    for row in snap.metrics:
        if row.ok is None:
            verdict = "<td></td>"
        else:
            verdict = f'<td class="{"bl-ok" if row.ok else "bl-bad"}">{"✔ PASS" if row.ok else "✘ FAIL"}</td>'
        rows.append(f'<tr data-metric="{html.escape(row.label)}" data-ok="{row.ok}"><td>{html.escape(row.label)}</td>'
                    f"<td><b>{html.escape(row.value)}</b></td><td>{html.escape(row.bound)}</td>{verdict}</tr>")
    head = "<tr><th>指标 metric</th><th>值 value</th><th>阈值 threshold</th><th></th></tr>"
    return f'<table class="bl-metrics">{head}{"".join(rows)}</table>'


def completion_svg(snap: Snapshot, *, width: int = 900, height: int = 330) -> str:
    """Finished documents over time, a red line at each crash and a green line at each resume."""
    left, right, top, bottom = 80, 24, 20, 62
    pw, ph = width - left - right, height - top - bottom
    series = list(snap.series)
    if series and snap.live:
        series.append((max(snap.elapsed_s, series[-1][0]), series[-1][1]))
    t_max = max([1.0, snap.elapsed_s if snap.live else 0.0, *(t for t, _ in series),
                 *(m.t for m in snap.markers)]) * 1.02
    n_max = max(snap.total, 1)

    def x(t: float) -> float:
        return left + pw * t / t_max

    def y(n: float) -> float:
        return top + ph * (1 - n / n_max)

    parts = [f'<svg class="bl-plot" xmlns="http://www.w3.org/2000/svg" width="100%" viewBox="0 0 {width} {height}" '
             f'style="max-width:{width}px;background:#fff;font-family:sans-serif">']
    for i in range(5):
        n = n_max * i / 4
        t = t_max * i / 4
        parts.append(f'<line x1="{left}" y1="{y(n):.1f}" x2="{left + pw}" y2="{y(n):.1f}" stroke="#e5e7eb"/>')
        parts.append(f'<text x="{left - 8}" y="{y(n) + 6:.1f}" font-size="20" text-anchor="end">{n:.0f}</text>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 26}" font-size="20" text-anchor="middle">{t:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" font-size="21" text-anchor="middle">'
                 "时间 time (s)</text>")
    parts.append(f'<text x="20" y="{top + ph / 2}" font-size="21" text-anchor="middle" '
                 f'transform="rotate(-90 20 {top + ph / 2})">已处理完 finished</text>')
    if series:
        points = []
        prev_n = series[0][1]
        for t, n in series:
            points.append(f"{x(t):.1f},{y(prev_n):.1f}")
            points.append(f"{x(t):.1f},{y(n):.1f}")
            prev_n = n
        parts.append(f'<polyline class="bl-line" points="{" ".join(points)}" fill="none" stroke="#2563eb" '
                     'stroke-width="4"/>')
    for i, m in enumerate(snap.markers):
        color = "#dc2626" if m.kind == "crash" else "#16a34a"
        dash = ' stroke-dasharray="8,5"' if m.kind == "crash" else ""
        ty = top + 24 + 26 * (i % 4)
        parts.append(f'<line class="bl-marker" data-kind="{m.kind}" x1="{x(m.t):.1f}" y1="{top}" x2="{x(m.t):.1f}" '
                     f'y2="{top + ph}" stroke="{color}" stroke-width="3"{dash}/>')
        right_half = x(m.t) > left + pw * 0.6  # keep the label inside the plot
        anchor, tx = ("end", x(m.t) - 6) if right_half else ("start", x(m.t) + 6)
        parts.append(f'<text x="{tx:.1f}" y="{ty}" font-size="21" fill="{color}" font-weight="700" '
                     f'text-anchor="{anchor}">'
                     f"{html.escape(m.label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


# -- the widget view ---------------------------------------------------------------------


class Dashboard:
    """The teacher's dashboard: controls, four buttons, live progress, counts, metrics and plot.

    ``model`` is a :class:`DashboardModel` (one is built from ``model_kwargs`` if
    not given). Each button calls one model action; a background thread polls
    the model while a worker runs and renders each snapshot. ``render`` can be
    called any time (tests call it after ``model.wait()``).
    """

    def __init__(self, model: DashboardModel | None = None, *, refresh_s: float = REFRESH_S,
                 **model_kwargs: Any) -> None:
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

        self.title = w.HTML(CSS + '<div class="bl-title">批量断点续传 · 教师演示面板 (teacher dashboard)</div>')
        self.status = w.HTML()
        self.status.add_class("bl-status-box")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="100%", height="40px"))
        self.progress.add_class("bl-progress")
        self.progress_label = w.HTML()
        self.progress_label.add_class("bl-progress-label")
        self.counts = w.HTML()
        self.counts.add_class("bl-counts")
        self.metrics = w.HTML()
        self.metrics.add_class("bl-metrics-box")
        self.plot = w.HTML()
        self.plot.add_class("bl-plot-box")
        self.widget = w.VBox([
            self.title,
            self.documents, self.fault_rate, self.concurrency, self.crash,
            w.HBox([self.run_button, self.crash_button, self.resume_button, self.reset_button],
                   layout=w.Layout(width="100%", max_width="1000px", flex_flow="row wrap")),
            self.status, self.progress_label, self.progress, self.counts, self.plot, self.metrics,
        ], layout=w.Layout(width="100%"))
        self.widget.add_class("batchlab-dashboard")
        self.render(self.model.snapshot())

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
            self.metrics.value = metrics_html(snap)
            self.plot.value = completion_svg(snap)
            self.run_button.disabled = snap.live
            self.crash_button.disabled = not snap.live
            self.resume_button.disabled = snap.live or snap.phase == IDLE
            self.reset_button.disabled = snap.phase == IDLE and not snap.live
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
