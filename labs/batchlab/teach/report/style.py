"""The plots' style for ``batchlab report``: projector-sized, with labels no machine renders as boxes.

Why a module of its own (the drawing is in :mod:`.plots`): the plots must be legible from the back of a classroom
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
from collections.abc import Iterable
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
        "resources_title": "Worker resources (sampled about once a second)",
        "cpu": "CPU (%, 100 = one core)",
        "rss_mb": "memory, RSS (MB)",
        "no_resources": "no resource samples (batchlab serve and the dashboard record them)",
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
        "resources_title": "工作进程资源使用（resources，约每秒采样一次）",
        "cpu": "CPU（%，100 = 一个核）",
        "rss_mb": "内存 RSS（MB）",
        "no_resources": "没有资源采样（batchlab serve 和教师面板会记录）",
    },
}


@dataclass(frozen=True)
class PlotStyle:
    """The language of the labels and the font family that can draw them."""

    lang: str
    family: str | None = None
    font_file: str | None = None

    def t(self, key: str, **kw: Any) -> str:
        return LABELS[self.lang][key].format(**kw)

    def rc(self) -> dict[Any, Any]:  # matplotlib types the keys as the Literal of every rcParam
        """rcParams for projector-legible figures in this style."""
        rc: dict[Any, Any] = {
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
            font = FT2Font(fname, face_index=index)  # type: ignore[call-arg, unused-ignore]
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
