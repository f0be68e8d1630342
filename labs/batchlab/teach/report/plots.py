"""The report's plots: throughput, latency, failures, pass against pass, retry delays.

Each function draws on its own :class:`matplotlib.figure.Figure` (no pyplot global state, no GUI
backend) in a :class:`~.style.PlotStyle` chosen by :mod:`.style`, which finds a font that can draw
the Chinese labels or falls back to English. matplotlib is imported inside each function, so that
importing the report costs nothing until a plot is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .style import PlotStyle

_KILL_COLOR = "#d62728"
_PASS_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


def _figure(style: PlotStyle, nrows: int = 1, ncols: int = 1, *, height: float = 6.75, **kw: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig: Any, path: Path, style: PlotStyle) -> Path:
    import matplotlib

    with matplotlib.rc_context(style.rc()):
        fig.savefig(path, format="png")
    return path


def _fmt_s(v: float) -> str:
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def plot_throughput(path: Path, *, commits: Sequence[float], passes: Sequence[tuple[int, float, float]],
                    kills: Sequence[float], style: PlotStyle) -> Path:
    """Cumulative commits (top) and throughput per time bin (bottom); each pass shaded, kills in red.

    Times are seconds since the first pass started.
    """
    import matplotlib

    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style, 2, 1, height=7.5, sharex=True)
        top, bottom = axes[0][0], axes[1][0]
        end = max([*commits, *(e for _, _, e in passes), *kills, 1e-3])
        ordered = sorted(commits)
        top.step([0.0, *ordered, end], [0, *range(1, len(ordered) + 1), len(ordered)], where="post",
                 color="#1f77b4")
        top.set_ylabel(style.t("committed"))
        top.set_title(style.t("throughput_title"))
        width = _bin_width(end)
        nbins = max(1, math.ceil(end / width))
        counts = [0] * nbins
        for t in ordered:
            counts[min(int(t / width), nbins - 1)] += 1
        bottom.bar([i * width for i in range(nbins)], [c * 60.0 / width for c in counts], width=width,
                   align="edge", color="#1f77b4", alpha=0.8)
        bottom.set_ylabel(style.t("rate"))
        bottom.set_xlabel(style.t("time_s"))
        for i, (pass_no, start, stop) in enumerate(passes):
            for ax in (top, bottom):
                ax.axvspan(start, stop, color=_PASS_COLORS[i % len(_PASS_COLORS)], alpha=0.08)
            top.annotate(style.t("pass", n=pass_no), xy=(start, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(6, -24), textcoords="offset points", fontsize=15)
            if i > 0:
                for ax in (top, bottom):
                    ax.axvline(start, color="#2ca02c", linestyle="--", linewidth=2.5)
                top.annotate(style.t("resume"), xy=(start, 0.5), xycoords=("data", "axes fraction"),
                             xytext=(6, 0), textcoords="offset points", color="#2ca02c", fontsize=15)
        for k in kills:
            for ax in (top, bottom):
                ax.axvline(k, color=_KILL_COLOR, linewidth=3.5)
            left = k > 0.3 * end  # the label goes where there is room: left of the line unless it is near the axis
            top.annotate(style.t("kill"), xy=(k, 0.8), xycoords=("data", "axes fraction"),
                         xytext=(-8 if left else 8, 0), textcoords="offset points", ha="right" if left else "left",
                         color=_KILL_COLOR, fontsize=16, fontweight="bold",
                         bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        bottom.set_xlim(0, end * 1.02)
        return _save(fig, path, style)


def _bin_width(span: float) -> float:
    """A round bin width giving 20 to 50 bins over ``span`` seconds."""
    raw = span / 40.0
    exp = 10 ** math.floor(math.log10(raw)) if raw > 0 else 0.01
    for m in (1, 2, 5, 10):
        if m * exp >= raw:
            return m * exp
    return 10 * exp


def plot_latency(path: Path, *, latencies: Sequence[float], p50: float | None, p95: float | None,
                 style: PlotStyle) -> Path:
    """Histogram of per-document latencies with p50 and p95 marked (log scale for a long tail)."""
    import matplotlib

    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style)
        ax = axes[0][0]
        values = [v for v in latencies if v > 0]
        if values:
            lo, hi = min(values), max(values)
            if hi / lo > 30:
                n = 30
                edges = [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
                ax.set_xscale("log")
            else:
                edges = 30  # type: ignore[assignment]
            ax.hist(values, bins=edges, color="#1f77b4", alpha=0.85, edgecolor="white")
        for value, key, color in ((p50, "p50", "#ff7f0e"), (p95, "p95", _KILL_COLOR)):
            if value is not None and value > 0:
                ax.axvline(value, color=color, linewidth=3.5, label=style.t(key, v=_fmt_s(value)))
        ax.set_xlabel(style.t("latency_s"))
        ax.set_ylabel(style.t("documents"))
        ax.set_title(style.t("latency_title"))
        if p50 or p95:
            ax.legend(loc="upper right")
        return _save(fig, path, style)


def plot_failures(path: Path, *, reasons: Mapping[str, int], rejected: Iterable[str], style: PlotStyle) -> Path:
    """Horizontal bars, one per failure reason; rejected-input reasons apart from service faults."""
    import matplotlib

    rejected = set(rejected)
    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style)
        ax = axes[0][0]
        items = sorted(reasons.items(), key=lambda kv: (kv[0] not in rejected, kv[1]))
        if items:
            colors = ["#ff7f0e" if k in rejected else "#1f77b4" for k, _ in items]
            bars = ax.barh([k for k, _ in items], [v for _, v in items], color=colors)
            ax.bar_label(bars, padding=4, fontsize=15)
            ax.set_xlim(0, max(v for _, v in items) * 1.15)
            from matplotlib.patches import Patch

            ax.legend(handles=[Patch(color="#ff7f0e", label=style.t("rejected_input")),
                               Patch(color="#1f77b4", label=style.t("service_fault"))], loc="lower right")
        else:
            ax.text(0.5, 0.5, style.t("no_failures"), ha="center", va="center", transform=ax.transAxes,
                    fontsize=22)
            ax.set_yticks([])
        ax.set_xlabel(style.t("count"))
        ax.set_title(style.t("failures_title"))
        return _save(fig, path, style)


def plot_passes(path: Path, *, rows: Sequence[Mapping[str, Any]], style: PlotStyle) -> Path:
    """Pass against pass: committed documents, service calls, retries and wall time, one panel each."""
    import matplotlib

    panels = (("committed", "m_committed"), ("calls", "m_calls"), ("retries", "m_retries"), ("wall_s", "m_wall"))
    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style, 1, len(panels))
        names = [style.t("pass", n=r["pass_no"]) for r in rows]
        colors = [_PASS_COLORS[i % len(_PASS_COLORS)] for i in range(len(rows))]
        for ax, (field, key) in zip(axes[0], panels, strict=True):
            values = [float(r.get(field) or 0) for r in rows]
            bars = ax.bar(names, values, color=colors)
            ax.bar_label(bars, labels=[f"{v:.2f}" if field == "wall_s" else f"{v:.0f}" for v in values],
                         padding=3, fontsize=15)
            ax.set_title(style.t(key), fontsize=17)
            ax.set_ylim(0, max(values + [1e-9]) * 1.2 or 1)
            ax.tick_params(axis="x", labelsize=14)
        fig.suptitle(style.t("passes_title"), fontsize=20)
        return _save(fig, path, style)


def plot_retry_delays(path: Path, *, delays: Sequence[tuple[int, float]],
                      expected: Sequence[tuple[int, float, float]], style: PlotStyle) -> Path:
    """Each measured retry delay against the attempt that failed, over the configured backoff band."""
    import matplotlib

    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style)
        ax = axes[0][0]
        for i, (attempt, lo, hi) in enumerate(expected):
            ax.fill_between([attempt - 0.35, attempt + 0.35], [lo, lo], [hi, hi], color="#2ca02c", alpha=0.25,
                            label=style.t("expected") if i == 0 else None)
        if delays:
            # Spread points sideways (deterministically) so that a cloud of equal delays stays visible.
            xs = [a + ((i * 0.618) % 1.0 - 0.5) * 0.5 for i, (a, _) in enumerate(delays)]
            ax.scatter(xs, [d for _, d in delays], s=40, color="#1f77b4", alpha=0.7, label=style.t("measured"),
                       zorder=3)
        else:
            ax.text(0.5, 0.5, style.t("no_retries"), ha="center", va="center", transform=ax.transAxes,
                    fontsize=22)
        attempts = sorted({a for a, _ in delays} | {a for a, _, _ in expected})
        if attempts:
            ax.set_xticks(attempts)
        ax.set_xlabel(style.t("attempt_failed"))
        ax.set_ylabel(style.t("delay_s"))
        ax.set_title(style.t("retry_title"))
        ax.legend(loc="upper left")
        return _save(fig, path, style)


def plot_resources(path: Path, *, samples: Sequence[tuple[float, float, float, int]], kills: Sequence[float],
                   style: PlotStyle) -> Path:
    """The worker's CPU (top) and resident memory (bottom) over time, from the ledger's ``resource`` samples
    ``(t, cpu_percent, rss_mb, pass_no)``, one line per pass (each pass is a new worker); kills as red lines.
    A run without samples says where they come from."""
    import matplotlib

    with matplotlib.rc_context(style.rc()):
        fig, axes = _figure(style, 2, 1, sharex=True)
        top, bottom = axes[0][0], axes[1][0]
        if samples:
            for i, n in enumerate(sorted({s[3] for s in samples})):
                mine = [s for s in samples if s[3] == n]
                color = _PASS_COLORS[i % len(_PASS_COLORS)]
                top.plot([s[0] for s in mine], [s[1] for s in mine], marker="o", color=color, label=style.t("pass", n=n))
                bottom.plot([s[0] for s in mine], [s[2] for s in mine], marker="o", color=color)
            for ax in (top, bottom):
                for i, k in enumerate(kills):
                    ax.axvline(k, color="#d62728", linewidth=2.5, label=style.t("kill") if i == 0 and ax is top else None)
            top.set_ylim(bottom=0)
            bottom.set_ylim(bottom=0)
            top.legend(loc="upper right")
        else:
            top.text(0.5, 0.5, style.t("no_resources"), ha="center", va="center", transform=top.transAxes,
                     fontsize=18)
        top.set_ylabel(style.t("cpu"))
        bottom.set_ylabel(style.t("rss_mb"))
        bottom.set_xlabel(style.t("time_s"))
        fig.suptitle(style.t("resources_title"), fontsize=20)
        return _save(fig, path, style)
