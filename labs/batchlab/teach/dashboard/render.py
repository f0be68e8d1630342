"""The dashboard's pure renderers: a :class:`~.model.Snapshot` in, HTML or SVG text out.

Apart from the widgets so that they are tested as plain functions (no ipywidgets, no kernel), and
so that the labels, colours and sizes a projector needs are read in one place. The ``data-*``
attributes they write are what tests and the browser test assert on, not the inline styles.
"""

from __future__ import annotations

import html
import os

from ...contract import DEGRADED, DONE, FAILED, PENDING, PROCESSING
from .board import ERROR, FINISHED, IDLE, KILLED, RUNNING, Snapshot

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
.bl-resources { font-size: 20px; margin: 8px 0; }
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
        + ('<br><span class="bl-outage-on" style="color:#d97706;font-weight:700">⚡ 外部模型已断开 '
           "(outage: every call fails fast)</span>" if snap.outage else "")
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


def resources_html(snap: Snapshot) -> str:
    """The worker's latest resource sample (about one a second, also written to the ledger for the report)."""
    r = snap.resources
    if not r:
        return '<div class="bl-resources bl-note">资源 (resources)：worker 运行时每秒采样一次 (CPU, memory, files, disk)。</div>'
    mb = 1024 * 1024
    return (f'<div class="bl-resources" data-rss="{int(r.get("rss_bytes", 0))}">资源 (resources) · '
            f'CPU <b>{float(r.get("cpu_percent", 0)):.0f} %</b> · 内存 (RSS) <b>{r.get("rss_bytes", 0) / mb:.0f} MB</b> · '
            f'打开文件 (open files) <b>{int(r.get("open_files", 0))}</b> · '
            f'磁盘 (disk) <b>{r.get("disk_bytes", 0) / mb:.1f} MB</b></div>')


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
                    f"<td><b>{html.escape(row.text)}</b></td><td>{html.escape(row.bound)}</td>{verdict}</tr>")
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
        color = {"crash": "#dc2626", "outage": "#d97706"}.get(m.kind, "#16a34a")
        dash = {"crash": ' stroke-dasharray="8,5"', "outage": ' stroke-dasharray="3,4"'}.get(m.kind, "")
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
