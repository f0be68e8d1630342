"""``class-report.md`` (Simplified Chinese) and its plots: what a class got right and what it broke.

Read only from the students' results files: per-test pass rates, the invariants most often broken (the ids
the grader's feedback starts its rule lines with, each student counted once per id), the scenario checks
most often failed, the score histogram and the points per lesson step. Plots are PNG through matplotlib's
Agg backend; labels are Chinese where the bundled Noto Sans CJK font is there, English otherwise, so no glyph
is ever missing (the same rule as the submission report).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .gradebook import broken_invariants, test_columns, write_atomic

STEP_ORDER = ("checkpoint", "idempotency", "backoff", "concurrency", "resume", "metrics", "scenarios")
STEP_ZH = {"checkpoint": "检查点", "idempotency": "幂等键", "backoff": "重试与退避", "concurrency": "并发",
           "resume": "恢复", "metrics": "指标", "scenarios": "验收场景"}
LABELS = {
    "zh": {"hist_title": "总分分布（score histogram）", "hist_x": "总分", "hist_y": "学生数",
           "step_title": "各步骤平均得分率（per step）", "step_y": "平均得分率 %",
           "dist_title": "各步骤得分率分布", "dist_x": "得分率 %"},
    "en": {"hist_title": "Score histogram", "hist_x": "total score", "hist_y": "students",
           "step_title": "Mean share of points per step", "step_y": "mean share of points %",
           "dist_title": "Share of points per step", "dist_x": "share of points %"},
}


def _step_of(test: Mapping[str, Any]) -> str:
    tags = test.get("tags") or []
    return str(tags[0]) if tags else "scenarios"


def step_shares(graded: list[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per step, each graded student's share of that step's points (percent), steps in the lesson's order."""
    shares: dict[str, list[float]] = {}
    for data in graded:
        got: dict[str, float] = {}
        top: dict[str, float] = {}
        for test in data.get("tests", []):
            step = _step_of(test)
            got[step] = got.get(step, 0.0) + float(test.get("score", 0))
            top[step] = top.get(step, 0.0) + float(test.get("max_score", 0))
        for step, maximum in top.items():
            if maximum > 0:
                shares.setdefault(step, []).append(100.0 * got[step] / maximum)
    order = [s for s in STEP_ORDER if s in shares] + sorted(s for s in shares if s not in STEP_ORDER)
    return {s: shares[s] for s in order}


def _font() -> str | None:
    """The bundled Noto Sans CJK SC (package ``mpl_font``) registered with matplotlib, or None."""
    import importlib.util

    from matplotlib import font_manager

    spec = importlib.util.find_spec("mpl_font")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "fonts" / "noto" / "NotoSansCJKsc-Regular.otf"
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            return str(font_manager.FontProperties(fname=str(path)).get_name())
    return None


def make_plots(folder: Path, totals: list[float], maximum: float, shares: Mapping[str, list[float]]) -> list[Path]:
    """``score-histogram.png``, ``steps.png`` (mean per step) and ``steps-distribution.png`` (one panel per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    family = _font()
    lang = "zh" if family else "en"
    t = LABELS[lang]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with plt.rc_context({"font.family": [family] if family else ["DejaVu Sans"]}):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.hist(totals, bins=min(20, max(5, len(totals))), range=(0, max(maximum, 1.0)), color="#4c72b0")
        ax.set(title=t["hist_title"], xlabel=t["hist_x"], ylabel=t["hist_y"])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # students are counted in whole numbers
        out.append(_save(fig, folder / "score-histogram.png"))
        fig, ax = plt.subplots(figsize=(8, 4.5))
        names = [STEP_ZH.get(s, s) if lang == "zh" else s for s in shares]
        ax.bar(names, [statistics.fmean(v) for v in shares.values()], color="#55a868")
        ax.set(title=t["step_title"], ylabel=t["step_y"], ylim=(0, 100))
        out.append(_save(fig, folder / "steps.png"))
        out.append(_distribution(folder / "steps-distribution.png", names, list(shares.values()), t))
    return out


def _distribution(path: Path, names: list[str], values: list[list[float]], t: Mapping[str, str]) -> Path:
    """One histogram panel per step: how the class's shares of that step spread (all or nothing, or partial)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = 4
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3 * rows), squeeze=False)
    for ax, name, data in zip(axes.flat, names + [""] * (rows * cols - len(names)),
                              values + [[]] * (rows * cols - len(values)), strict=True):
        if not name:
            ax.axis("off")
            continue
        ax.hist(data, bins=10, range=(0, 100), color="#8172b2")
        ax.set(title=name, xlabel=t["dist_x"])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(t["dist_title"])
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_class_report(out: Path, results: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``class-report.md`` and ``plots/`` into ``out``."""
    graded = [d for d in results.values() if d["extra_data"]["grade_all"]["status"] == "graded"]
    numbers, names, usual = test_columns(results.values())
    totals = [float(d.get("score", 0)) for d in results.values()]
    shares = step_shares(graded)
    make_plots(out / "plots", totals, usual, shares)
    lines = _summary(results, graded, totals, usual)
    lines += ["", "![总分分布](plots/score-histogram.png)", "", "## 各步骤得分率（per step）", "",
              "![各步骤平均得分率](plots/steps.png)", "", "![各步骤得分率分布](plots/steps-distribution.png)", "",
              "| 步骤（step） | 平均得分率 | 满分人数 |", "| --- | --- | --- |"]
    lines += [f"| {STEP_ZH.get(s, s)}（{s}） | {statistics.fmean(v):.1f} % | {sum(1 for x in v if x >= 100)}/{len(v)} |"
              for s, v in shares.items()]
    lines += ["", "## 每个测试的通过率（pass rate per test）", "",
              f"按已评分（graded）的 {len(graded)} 名学生计算。", "",
              "| 编号 | 测试 | 通过 | 通过率 |", "| --- | --- | --- | --- |"]
    for number in numbers:
        passed = sum(1 for d in graded for t in d.get("tests", [])
                     if str(t.get("number")) == number and t.get("status") == "passed")
        rate = 100.0 * passed / len(graded) if graded else 0.0
        lines.append(f"| {number} | {names[number].replace('|', '/')} | {passed}/{len(graded)} | {rate:.0f} % |")
    lines += _broken_sections(results)
    lines += _not_graded(results)
    path = out / "class-report.md"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def _summary(results: Mapping[str, Mapping[str, Any]], graded: list[Mapping[str, Any]], totals: list[float],
             usual: float) -> list[str]:
    statuses = Counter(d["extra_data"]["grade_all"]["status"] for d in results.values())
    lines = ["# 全班评分报告（class report）", "", f"- 学生数：{len(results)}",
             f"- 已评分（graded）：{statuses['graded']}；无法读取（unreadable）：{statuses['unreadable']}；"
             f"超时（timeout）：{statuses['timeout']}；评分进程崩溃（crashed）：{statuses['crashed']}",
             f"- 满分：{usual:g}"]
    if totals:
        lines.append(f"- 平均分 {statistics.fmean(totals):.1f}，中位数 {statistics.median(totals):g}，"
                     f"最高 {max(totals):g}，最低 {min(totals):g}（未评分的提交按 0 分计）")
    if graded and graded[0].get("extra_data", {}).get("hidden_run"):
        lines.append("- 包含隐藏场景（hidden scenarios）")
    return lines


def _broken_sections(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    invariants: dict[str, list[str]] = {}
    checks: dict[str, list[str]] = {}
    for student, data in sorted(results.items()):
        found, failed = broken_invariants(data)
        for name in found:
            invariants.setdefault(name, []).append(student)
        for name in failed:
            checks.setdefault(name, []).append(student)
    lines = ["", "## 最常被破坏的不变量（invariants most often broken）", "",
             "不变量编号（invariant id）取自评分反馈（feedback）中的规则行，每名学生每个编号只计一次；"
             "在 grader/README.md 中可按编号查到规则。", ""]
    lines += _ranked(invariants, "不变量（invariant）") if invariants else ["（没有学生破坏任何有编号的不变量。）"]
    lines += ["", "## 验收场景中最常失败的检查（scenario checks）", ""]
    lines += _ranked(checks, "检查（check）") if checks else ["（没有失败的场景检查。）"]
    return lines


def _ranked(found: Mapping[str, list[str]], head: str) -> list[str]:
    rows = [f"| {head} | 学生数 | 学生（前 5 名） |", "| --- | --- | --- |"]
    for name, students in sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        shown = ", ".join(students[:5]) + (f" 等 {len(students)} 人" if len(students) > 5 else "")
        rows.append(f"| `{name}` | {len(students)} | {shown} |")
    return rows


def _not_graded(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = [(s, d["extra_data"]["grade_all"]) for s, d in sorted(results.items())
            if d["extra_data"]["grade_all"]["status"] != "graded"]
    if not rows:
        return []
    lines = ["", "## 未能评分的提交（0 分及原因）", "", "| 学生 | 状态 | 原因 |", "| --- | --- | --- |"]
    lines += [f"| {s} | {m['status']} | {str(m.get('reason', '')).replace('|', '/')} |" for s, m in rows]
    return lines
