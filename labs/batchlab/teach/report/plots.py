"""Projector-sized metric plots for ``batchlab report``, with labels no machine renders as boxes.

Why a module of its own: the plots must be legible from the back of a classroom
(16:9, large fonts, thick lines) and must never show "tofu" boxes. Chinese
labels are used only when matplotlib's font manager knows a font that really
has every glyph of those labels (checked in the font's own character map, not
guessed from its name); otherwise every label is English.

The install command brings such a font: the kit depends on the pip package
``mpl-font``, which ships Noto Sans CJK SC (SIL Open Font License 1.1). Its files
are registered with matplotlib's font manager (``fontManager.addfont``) the first
time a style is chosen, without importing ``mpl_font`` itself (its ``__init__``
imports pyplot and rewrites rcParams). A fresh machine therefore gets Chinese
plots; where the package is missing and no system CJK font is known (say, a
Python without the kit's dependencies), every label stays English.

Every function draws on its own :class:`matplotlib.figure.Figure` (no pyplot
global state, no GUI backend), so plots can be made from worker threads,
notebooks and tests alike.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Families tried first, in order (Simplified Chinese faces before others).
PREFERRED_CJK_FAMILIES = (
    "Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "Source Han Sans CN", "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "SimHei", "Heiti SC",
    "Sarasa Gothic SC", "Droid Sans Fallback", "AR PL UKai CN", "AR PL UMing CN", "Noto Sans CJK JP",
)
#: The pip package (a dependency in pyproject.toml) that brings a CJK font, and its files the kit registers:
#: Noto Sans CJK SC Regular and Bold, SIL Open Font License 1.1 (licence text in each file's name table).
BUNDLED_FONT_PACKAGE = "mpl_font"
BUNDLED_FONT_FILES = ("fonts/noto/NotoSansCJKsc-Regular.otf", "fonts/noto/NotoSansCJKsc-Bold.otf")
#: Hints in a font file's name that it may be CJK (used only to find fonts missing from a stale cache).
_CJK_FILE_HINTS = ("cjk", "wqy", "wenquan", "hei", "song", "ming", "kai", "han", "droidsansfallback",
                   "sarasa", "yahei", "pingfang", "simsun", "noto sans sc", "notosanssc")

EN = "en"
ZH = "zh"

#: Every label the plots draw, per language. The Chinese ones carry the English term on first use.
LABELS: dict[str, dict[str, str]] = {
    EN: {
        "throughput_title": "Throughput over time (kill marked)",
        "time_s": "time since the first pass started (s)",
        "committed": "committed documents",
        "rate": "throughput (docs/min)",
        "kill": "kill (SIGKILL)",
        "resume": "resume",
        "pass": "pass {n}",
        "latency_title": "Per-document latency (first dispatch to commit)",
        "latency_s": "latency (s)",
        "documents": "documents",
        "p50": "p50 = {v}",
        "p95": "p95 = {v}",
        "failures_title": "Failure reasons",
        "count": "count",
        "no_failures": "no failures recorded",
        "rejected_input": "rejected input",
        "service_fault": "service fault (per call)",
        "passes_title": "Pass 1 (first run) against pass 2 (resume)",
        "m_committed": "committed docs",
        "m_calls": "service calls",
        "m_retries": "retries",
        "m_wall": "wall time (s)",
        "retry_title": "Retry delays (call_fail to next call_start)",
        "attempt_failed": "failed attempt",
        "delay_s": "delay before the retry (s)",
        "expected": "configured backoff + jitter",
        "measured": "measured",
        "no_retries": "no retries recorded",
    },
    ZH: {
        "throughput_title": "吞吐量（throughput）随时间变化，红线为崩溃",
        "time_s": "自首次运行开始的时间（秒）",
        "committed": "已提交文档数",
        "rate": "吞吐量（文档/分钟）",
        "kill": "崩溃（SIGKILL）",
        "resume": "恢复（resume）",
        "pass": "第 {n} 轮",
        "latency_title": "单文档延迟（latency）：首次派发到提交",
        "latency_s": "延迟（秒）",
        "documents": "文档数",
        "p50": "p50 = {v}",
        "p95": "p95 = {v}",
        "failures_title": "失败原因分布（failure reasons）",
        "count": "次数",
        "no_failures": "没有记录到失败",
        "rejected_input": "输入被拒绝",
        "service_fault": "服务故障（按调用计）",
        "passes_title": "第 1 轮（首次运行）对比第 2 轮（恢复运行）",
        "m_committed": "提交文档数",
        "m_calls": "服务调用数",
        "m_retries": "重试次数",
        "m_wall": "耗时（秒）",
        "retry_title": "重试间隔（退避 backoff）：失败到下一次调用",
        "attempt_failed": "失败的第几次尝试",
        "delay_s": "重试前等待（秒）",
        "expected": "配置的退避 + 抖动（jitter）",
        "measured": "实测",
        "no_retries": "没有记录到重试",
    },
}

_KILL_COLOR = "#d62728"
_PASS_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")


@dataclass(frozen=True)
class PlotStyle:
    """The language of the labels and the font family that can draw them."""

    lang: str
    family: str | None = None
    font_file: str | None = None

    def t(self, key: str, **kw: Any) -> str:
        return LABELS[self.lang][key].format(**kw)

    def rc(self) -> dict[str, Any]:
        """rcParams for projector-legible figures in this style."""
        rc: dict[str, Any] = {
            "font.size": 16, "axes.titlesize": 20, "axes.labelsize": 17, "xtick.labelsize": 15,
            "ytick.labelsize": 15, "legend.fontsize": 15, "lines.linewidth": 3.0, "axes.grid": True,
            "grid.alpha": 0.3, "figure.dpi": 100, "savefig.dpi": 110,
        }
        if self.family:
            rc["font.family"] = "sans-serif"
            rc["font.sans-serif"] = [self.family, "DejaVu Sans"]
            # CJK fonts often lack U+2212 MINUS SIGN: use '-' so no glyph is missing.
            rc["axes.unicode_minus"] = False
        return rc


def _label_chars(lang: str = ZH) -> str:
    """Every non-ASCII character the labels of ``lang`` use (what a font must cover)."""
    return "".join(sorted({ch for text in LABELS[lang].values() for ch in text if ord(ch) > 127}))


@lru_cache(maxsize=256)
def _charmap(fname: str, index: int) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        try:
            font = FT2Font(fname, face_index=index)  # type: ignore[call-arg]
        except TypeError:  # older matplotlib: first face only
            font = FT2Font(fname)
        return frozenset(font.get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def covers(fname: str, text: str, index: int = 0) -> bool:
    """True if the font file (face ``index``) has a glyph for every character of ``text``."""
    cmap = _charmap(fname, index)
    return all(ord(ch) in cmap for ch in text)


def find_cjk_font(entries: Iterable[Any] | None = None, *, text: str | None = None,
                  scan_system: bool = True) -> Any | None:
    """The font manager entry of a font that can draw every Chinese label, or None.

    ``entries`` defaults to matplotlib's ``fontManager.ttflist``; pass another list
    to decide for a given set of fonts. Preferred Simplified Chinese families are
    tried first, then any known font. When nothing fits and ``scan_system`` is on,
    CJK-looking font files that a stale matplotlib cache does not list yet (a font
    installed after matplotlib first ran) are added to the font manager and tried.
    """
    from matplotlib import font_manager

    if entries is None:
        register_bundled_fonts()
    text = text or _label_chars(ZH)
    pool = list(font_manager.fontManager.ttflist if entries is None else entries)
    rank = {name: i for i, name in enumerate(PREFERRED_CJK_FAMILIES)}
    pool.sort(key=lambda e: (rank.get(e.name, len(rank)), e.weight != 400, e.name))
    for entry in pool:
        if entry.name in rank and covers(entry.fname, text, getattr(entry, "index", 0)):
            return entry
    for entry in pool:
        if entry.name not in rank and _looks_cjk(entry.fname) and covers(entry.fname, text,
                                                                           getattr(entry, "index", 0)):
            return entry
    if entries is None and scan_system:
        known = {e.fname for e in pool}
        added = False
        for fname in font_manager.findSystemFonts():
            if fname not in known and _looks_cjk(fname):
                try:
                    font_manager.fontManager.addfont(fname)
                    added = True
                except (OSError, RuntimeError, ValueError):
                    continue
        if added:
            return find_cjk_font(text=text, scan_system=False)
    return None


def bundled_cjk_fonts() -> list[Path]:
    """The font files of :data:`BUNDLED_FONT_PACKAGE` on this machine (empty when the package is absent).

    The package is located, not imported: ``find_spec`` of a top-level package runs none of its code.
    """
    try:
        spec = importlib.util.find_spec(BUNDLED_FONT_PACKAGE)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    files = []
    for root in spec.submodule_search_locations:
        files += [Path(root) / rel for rel in BUNDLED_FONT_FILES if (Path(root) / rel).is_file()]
    return files


def register_bundled_fonts() -> list[str]:
    """Add the bundled CJK font files to matplotlib's font manager (once); return the files added now.

    ``addfont`` only appends to the in-memory font list: no rcParams change, nothing written to disk.
    """
    from matplotlib import font_manager

    known = {e.fname for e in font_manager.fontManager.ttflist}
    added = []
    for path in bundled_cjk_fonts():
        if str(path) in known:
            continue
        try:
            font_manager.fontManager.addfont(str(path))
        except (OSError, RuntimeError, ValueError):
            continue
        added.append(str(path))
    return added


def _looks_cjk(fname: str) -> bool:
    low = Path(fname).name.lower()
    return any(h in low for h in _CJK_FILE_HINTS) or low.endswith(".ttc")


def choose_style(lang: str = "auto", entries: Iterable[Any] | None = None) -> PlotStyle:
    """``auto``: Chinese where a CJK font is found, else English; ``en`` always English.

    ``zh`` without a usable font raises :class:`~batchlab.errors.UsageError` rather
    than drawing boxes.
    """
    if lang == EN:
        return PlotStyle(EN)
    entry = find_cjk_font(entries)
    if entry is not None:
        return PlotStyle(ZH, family=entry.name, font_file=entry.fname)
    if lang == ZH:
        from ...errors import UsageError

        raise UsageError("no font with Chinese glyphs is known to matplotlib", code="no_cjk_font",
                         hints=["Use --lang en or --lang auto.",
                                "Reinstall the kit (pip install -e .), which brings the mpl-font package "
                                "(Noto Sans CJK SC), or install a system CJK font "
                                "(Debian: apt-get install fonts-noto-cjk)."])
    return PlotStyle(EN)


def _figure(style: PlotStyle, nrows: int = 1, ncols: int = 1, *, height: float = 6.75, **kw: Any):
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
        for ax, (field, key) in zip(axes[0], panels):
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
