"""``batchlab report RUN_DIR --out DIR``: a run's submission report, filled from its ledger and metrics.

A student's submission is evidence, not claims: every figure and plot here comes
from the run directory the harness wrote (``ledger.jsonl`` and ``sink.sqlite``,
through :func:`batchlab.metrics.metrics_for_run`), never from the student's own
report, which is shown beside the ledger's figures so that a disagreement is
visible (observability must not lie).

The output folder holds::

    report.md        the template (templates/submission-report.md) filled in, Chinese
    report.json      every figure: metrics, thresholds, per pass, retry delays, the student's report
    grader-results.json  a copy of the grader's results, when ``--grader-results`` is given
    metrics.csv      one row per metric: value, threshold, result
    passes.csv       one row per pass (pass 1 against pass 2 ...)
    plots/*.png      throughput over time (kill marked), latency histogram (p50/p95),
                     failure reasons, pass against pass, retry delays against the backoff

The folder is written under a temporary name and renamed at the end, so a bad
input or an interruption never leaves half a report, and an existing non-empty
``--out`` is refused (unified error, exit 2) rather than overwritten.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...contract import percentile
from ...errors import EXIT_OK, KitError, UsageError
from ...ledger import read_events
from ...metrics import Metrics, _read_spec, format_value, metrics_for_run, usable_events
from ...paths import kit_root
from .plots import (
    PlotStyle,
    choose_style,
    plot_failures,
    plot_latency,
    plot_passes,
    plot_retry_delays,
    plot_throughput,
)
from ...thresholds import THRESHOLDS, Threshold

TEMPLATE = Path("templates/submission-report.md")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")

#: Chinese names of the metrics, with the English term (the report is teaching text).
METRIC_NAMES = {
    "completion_rate": "完成率（completion rate）",
    "duplicate_rate": "重复处理率（duplicate rate）",
    "fail_rate": "失败率（fail rate）",
    "resume_time_s": "恢复时间（resume time）",
    "throughput_docs_per_min": "吞吐量（throughput）",
    "latency_p50_s": "延迟 p50（latency）",
    "latency_p95_s": "延迟 p95（latency）",
    "retries": "重试次数（retries）",
}
PLOTS = ("throughput", "latency", "failures", "passes", "retry_delays")
LOG_LINES = 40
#: The placeholders a template may use (``{{ name }}``); templates/README.md lists what each one holds.
TEMPLATE_KEYS = frozenset({
    "generated_at", "run_dir", "impl", "input", "batch_id", "documents", "unique", "rejected", "degraded",
    "completed", "config", "fault_plan", "kills", "passes", "verdict", "metric_table", "pass_table",
    "failure_table", "retry_table", "retry_count", "integrity", "observability_table", "log_excerpt",
    "plot_throughput", "plot_latency", "plot_failures", "plot_passes", "plot_retry_delays", "plot_language",
    "metrics_command", "report_command", "p50", "p95", "grader_section",
})


def template_path() -> Path:
    return kit_root() / TEMPLATE


@dataclass(frozen=True)
class RetryDelay:
    """The wait between a failed service call and the retry of the same chunk, in one pass."""

    pass_no: int
    doc_id: str
    chunk: int
    attempt: int  # the attempt that failed (1 = the first call)
    delay_s: float


@dataclass
class ReportResult:
    out: Path
    files: list[Path]
    style: PlotStyle
    meets_thresholds: bool
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def markdown(self) -> Path:
        return self.out / "report.md"


# ---------------------------------------------------------------------------
# What the ledger says, beyond batchlab.metrics
# ---------------------------------------------------------------------------

def retry_delays(events: Sequence[Mapping[str, Any]]) -> list[RetryDelay]:
    """Time from each ``call_fail`` to the next ``call_start`` of the same identity and chunk, same pass.

    A failure followed by no retry (retries exhausted, degraded, or the pass was
    killed) gives no delay; neither does a retry in a later pass (that wait is the
    outage, not the backoff).
    """
    pending: dict[tuple[int, str, int], Mapping[str, Any]] = {}
    result: list[RetryDelay] = []
    for ev in events:
        kind = ev.get("ev")
        if kind not in ("call_fail", "call_start"):
            continue
        key = (int(ev.get("pass", 0)), str(ev.get("ident")), int(ev.get("chunk", 0)))
        if kind == "call_fail":
            pending[key] = ev
        elif key in pending:
            fail = pending.pop(key)
            result.append(RetryDelay(pass_no=key[0], doc_id=str(ev.get("doc_id")), chunk=key[2],
                                     attempt=int(fail.get("attempt", 1)),
                                     delay_s=max(float(ev["t"]) - float(fail["t"]), 0.0)))
    return result


def expected_backoff(config: Mapping[str, Any], attempts: Sequence[int]) -> list[tuple[int, float, float]]:
    """The configured wait after failed attempt ``a``: ``min(max_delay, base * 2**(a-1)) + [0, jitter]``."""
    base = float(config.get("base_delay", 0.0))
    cap = float(config.get("max_delay", 0.0))
    jitter = float(config.get("jitter", 0.0))
    return [(a, min(cap, base * 2 ** (a - 1)), min(cap, base * 2 ** (a - 1)) + jitter) for a in attempts]


def interruptions(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first crash or kill event of each pass (a worker's own crash and the parent's kill may both appear)."""
    seen: set[int] = set()
    result = []
    for ev in events:
        if ev.get("ev") in ("crash", "kill") and int(ev.get("pass", 0)) not in seen:
            seen.add(int(ev.get("pass", 0)))
            result.append(ev)
    return result


def log_excerpt(events: Sequence[Mapping[str, Any]], origin: float, *, limit: int = LOG_LINES) -> list[str]:
    """The ledger lines that tell the story: pass starts and ends, first faults, commits, degradations, the kill."""
    always = {"pass_start", "pass_end", "crash", "kill", "timeout", "student_error", "input_error"}
    per_pass: dict[tuple[int, str], int] = defaultdict(int)
    quota = {"call_fail": 3, "sink_put": 2, "degraded": 3, "failed": 3}
    chosen: list[Mapping[str, Any]] = []
    for ev in events:
        kind = str(ev.get("ev"))
        if kind == "state" and ev.get("state") in ("degraded", "failed"):
            kind = str(ev.get("state"))
        elif kind == "call_start" and int(ev.get("attempt", 1)) > 1:
            kind = "retry"
            quota.setdefault("retry", 2)
        if kind in always:
            chosen.append(ev)
        elif kind in quota:
            slot = (int(ev.get("pass", 0)), kind)
            if per_pass[slot] < quota[kind]:
                per_pass[slot] += 1
                chosen.append(ev)
    if len(chosen) > limit:  # keep the story's ends: the starts, kills and ends are never cut
        keep = [e for e in chosen if e.get("ev") in always]
        rest = [e for e in chosen if e.get("ev") not in always][: max(limit - len(keep), 0)]
        ids = {id(e) for e in keep + rest}
        chosen = [e for e in chosen if id(e) in ids]
    return [_log_line(ev, origin) for ev in chosen]


def _log_line(ev: Mapping[str, Any], origin: float) -> str:
    kind = str(ev.get("ev"))
    t = float(ev.get("t", origin)) - origin
    head = f"+{t:8.3f}s  pass {ev.get('pass', '?')}  {kind:<11}"
    if kind in ("call_fail", "call_start"):
        what = f"{ev.get('doc_id')} chunk {ev.get('chunk')} attempt {ev.get('attempt')}"
        if kind == "call_fail":
            what += f": {ev.get('error')}" + (" (permanent)" if ev.get("permanent") else "")
        return f"{head} {what}"
    if kind == "sink_put":
        return f"{head} {ev.get('doc_id')} mode={ev.get('mode')} chunks={ev.get('n')}"
    if kind == "state":
        err = f" last_error={ev.get('error')}" if ev.get("error") else ""
        return f"{head} {ev.get('doc_id')} -> {ev.get('state')}{err}"
    if kind == "pass_start":
        return f"{head} crash plan={ev.get('crash')} at={ev.get('at')}"
    if kind == "pass_end":
        rep = ev.get("report") or {}
        return (f"{head} executed={rep.get('executed', '?')} skipped={rep.get('skipped', '?')} "
                f"retries={rep.get('retries', '?')} calls={ev.get('calls', '?')}")
    if kind in ("crash", "kill"):
        return f"{head} {ev.get('kind')} at={ev.get('at', ev.get('delay', ''))} {ev.get('doc_id', '')}".rstrip()
    if kind == "timeout":
        return f"{head} after {ev.get('after_s')} s"
    return f"{head} {str(ev.get('error', ''))[:160]}"


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------

def fmt_value(metric: str, value: Any) -> str:
    return format_value(metric, value, per_min_unit="文档/分钟")


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metric_rows(metrics: Metrics, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> list[dict[str, Any]]:
    """Each threshold with its measured value, then the reported-only figures (no threshold)."""
    rows = [{"metric": name, "value": metrics.value(name), "threshold": t.text, "ok": t.passes(metrics.value(name))}
            for name, t in thresholds.items()]
    for name in ("throughput_docs_per_min", "latency_p50_s", "latency_p95_s", "retries"):
        if name not in thresholds:
            rows.append({"metric": name, "value": metrics.value(name), "threshold": "reported", "ok": None})
    return rows


def _result_mark(ok: bool | None) -> str:
    return "仅报告（reported）" if ok is None else ("✅ 达标" if ok else "❌ 未达标")


def _observability(metrics: Metrics) -> tuple[str, list[dict[str, Any]]]:
    """The student's own BatchReport (last pass that returned) beside the ledger's figures."""
    report = next((p.report for p in reversed(metrics.passes) if p.report), None)
    if not report:
        return ("没有任何一轮正常返回 `BatchReport`，无法核对自报指标（pass 全部被杀死或抛出异常）。", [])
    rows = []
    for name in ("completion_rate", "duplicate_rate", "fail_rate"):
        own = report.get(name)
        ledger = metrics.value(name)
        agree = own is not None and ledger is not None and abs(float(own) - float(ledger)) <= 0.01
        rows.append({"metric": name, "student": own, "ledger": ledger, "agree": agree})
    own_done = None if report.get("done") is None else int(report.get("done", 0))
    own_deg = int(report.get("degraded", 0) or 0)
    if own_done is not None:
        # done may or may not include degraded in a student's report: accept either reading.
        agree = metrics.completed in (own_done, own_done + own_deg)
        rows.append({"metric": "completed", "student": own_done, "ledger": metrics.completed, "agree": agree})
    table = _table(["指标", "你的 BatchReport", "账本（ledger）", "是否一致"],
                   [[METRIC_NAMES.get(r["metric"], "完成文档数（done）"), fmt_value(r["metric"], r["student"]),
                     fmt_value(r["metric"], r["ledger"]), "一致" if r["agree"] else "⚠ 不一致"] for r in rows])
    return table, rows


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

def _check_run_dir(run: Path) -> None:
    if not run.is_dir() or not (run / "spec.json").is_file():
        raise UsageError(f"{run} is not a run directory", code="not_a_run", details={"run_dir": str(run)},
                         hints=["A run directory has spec.json and ledger.jsonl; make one with "
                                "`batchlab demo --run-dir DIR` or `batchlab run --run-dir DIR`."])
    if not usable_events(read_events(run / "ledger.jsonl")):
        raise UsageError(f"{run / 'ledger.jsonl'} has no events", code="empty_ledger",
                         details={"run_dir": str(run), "ledger": str(run / "ledger.jsonl")},
                         hints=["Run at least one pass first: `batchlab run --input FILE --run-dir "
                                f"{run}`.", "A pass that died before its first event leaves nothing to report."])


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty", code="output_exists", details={"out": str(out)},
                         hints=["Choose a new --out folder; an earlier report is never overwritten."])


def fill_template(text: str, values: Mapping[str, Any]) -> str:
    """Replace every ``{{ name }}``; a placeholder without a value is an error, never left in the output."""
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(values))
    if unknown:
        raise KitError(f"the template has placeholders the report does not know: {', '.join(unknown)}",
                       code="template_error", details={"unknown": unknown, "known": sorted(values)},
                       hints=["Use only the placeholders listed in templates/README.md."])
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def build_report(*, run_dir: str | Path, out: str | Path, lang: str = "auto",
                 template: str | Path | None = None, grader_results: str | Path | None = None) -> ReportResult:
    """Write the report folder ``out`` for the run in ``run_dir`` (see the module docstring).

    ``grader_results``: a ``results.json`` written by ``pytest grader``; its score
    table goes into the report and the file is copied beside it.
    """
    run = Path(run_dir)
    out = Path(out)
    _check_run_dir(run)
    _check_out(out)
    graded = read_grader_results(grader_results) if grader_results is not None else None
    tpl = Path(template) if template else template_path()
    if not tpl.is_file():
        raise UsageError(f"template {tpl} not found", code="template_missing", details={"template": str(tpl)},
                         hints=["The kit's template is templates/submission-report.md; pass --template PATH."])
    template_text = tpl.read_text(encoding="utf-8")
    fill_template(template_text, dict.fromkeys(TEMPLATE_KEYS, ""))  # an unknown placeholder fails before any work
    style = choose_style(lang)
    spec = _read_spec(run)  # a damaged spec, input, sink or ledger: a KitError naming it, never a traceback
    events = usable_events(read_events(run / "ledger.jsonl"))
    metrics = metrics_for_run(run)

    origin = metrics.passes[0].started if metrics.passes else float(events[0]["t"])
    delays = retry_delays(events)
    kills = interruptions(events)
    config = spec.get("config", {})
    attempts = sorted({d.attempt for d in delays} | set(range(1, int(config.get("max_attempts", 1)))))
    expected = expected_backoff(config, attempts)
    pass_rows = [p.to_dict() for p in metrics.passes]
    rows = metric_rows(metrics)
    observed_table, observed = _observability(metrics)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "plots").mkdir(parents=True)
    try:
        plot_throughput(tmp / "plots/throughput.png",
                        commits=[float(e["t"]) - origin for e in events if e.get("ev") == "sink_put"],
                        passes=[(p.pass_no, p.started - origin, (p.ended or p.started) - origin)
                                for p in metrics.passes],
                        kills=[float(k["t"]) - origin for k in kills], style=style)
        plot_latency(tmp / "plots/latency.png", latencies=metrics.latencies_s, p50=metrics.latency_p50_s,
                     p95=metrics.latency_p95_s, style=style)
        plot_failures(tmp / "plots/failures.png", reasons=metrics.failure_reasons, rejected=rejected_codes(spec),
                      style=style)
        plot_passes(tmp / "plots/passes.png", rows=pass_rows, style=style)
        plot_retry_delays(tmp / "plots/retry_delays.png", delays=[(d.attempt, d.delay_s) for d in delays],
                          expected=expected, style=style)

        data = _data(run, spec, metrics, rows, pass_rows, delays, expected, observed, style)
        (tmp / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n",
                                         encoding="utf-8")
        _write_csv(tmp / "metrics.csv", ["metric", "value", "threshold", "ok"],
                   [[r["metric"], r["value"], r["threshold"], "" if r["ok"] is None else r["ok"]] for r in rows])
        pass_fields = ["pass_no", "exit", "wall_s", "committed", "calls", "retries", "call_failures",
                       "throughput_docs_per_min", "latency_p50_s", "latency_p95_s", "resume_time_s"]
        _write_csv(tmp / "passes.csv", pass_fields, [[r.get(f) for f in pass_fields] for r in pass_rows])
        values = _values(run, out, spec, metrics, rows, pass_rows, delays, expected, kills, events, origin,
                         observed_table, style)
        values["grader_section"] = grader_section(graded)
        if graded is not None:
            (tmp / "grader-results.json").write_text(json.dumps(graded, ensure_ascii=False, indent=2) + "\n",
                                                     encoding="utf-8")
        (tmp / "report.md").write_text(fill_template(template_text, values), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return ReportResult(out=out, files=files, style=style, meets_thresholds=metrics.meets_thresholds(), data=data)


def read_grader_results(path: str | Path) -> dict[str, Any]:
    """A Gradescope-format ``results.json`` (``score``, ``tests[]``), or the unified error."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = None
        problem = "does not exist"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        data = None
        problem = f"is not readable JSON ({exc.__class__.__name__})"
    else:
        problem = "has no `tests` list" if not (isinstance(data, dict) and isinstance(data.get("tests"), list)) else ""
    if data is None or problem:
        raise UsageError(f"grader results {p} {problem}", code="bad_grader_results", details={"path": str(p)},
                         hints=["Run `pytest grader` first; it writes grader-results/results.json."])
    return data


def grader_section(results: Mapping[str, Any] | None) -> str:
    """The grader's score table in Markdown (or how to attach it)."""
    if results is None:
        return ("没有附上评分结果。运行 `pytest grader` 后，用 `batchlab report RUN_DIR --out DIR "
                "--grader-results grader-results/results.json` 重新生成报告即可附上。")
    tests = results.get("tests", [])
    total = sum(float(t.get("score", 0) or 0) for t in tests)
    top = sum(float(t.get("max_score", 0) or 0) for t in tests)
    score = float(results.get("score", total) or 0)
    extra = results.get("extra_data") or {}
    table = _table(["编号", "测试", "得分", "结果"],
                   [[t.get("number", ""), str(t.get("name", ""))[:90], f"{float(t.get('score', 0) or 0):g} / "
                     f"{float(t.get('max_score', 0) or 0):g}", "✅ 通过" if t.get("status") == "passed" else "❌ 未通过"]
                    for t in tests])
    lines = [f"总分（score）：**{score:g} / {float(results.get('max_score', top) or top):g}**，"
             f"{sum(t.get('status') == 'passed' for t in tests)} / {len(tests)} 项通过。", "", table]
    hidden = extra.get("hidden_scenarios")
    if hidden:
        lines += ["", f"另有 {hidden} 个隐藏场景（hidden scenarios）在正式评分时运行，本地全部通过不等于满分。"]
    errors = extra.get("grader_errors") or []
    if errors:
        lines += ["", f"⚠ 评分器自身出错 {len(errors)} 次（grader errors），请联系助教。"]
    lines += ["", "原始结果已复制到本文件夹的 `grader-results.json`。"]
    return "\n".join(lines)


def rejected_codes(spec: Mapping[str, Any]) -> set[str]:
    """The classified reasons of the input's invalid documents (400-like), as opposed to service faults."""
    from ...documents import Document, load_batch, try_parse

    return {r.code for r in map(try_parse, load_batch(spec["input"]).documents) if not isinstance(r, Document)}


def _write_csv(path: Path, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(head)
        writer.writerows(rows)


def _delay_stats(delays: Sequence[RetryDelay], expected: Sequence[tuple[int, float, float]]) -> dict[str, Any]:
    by_attempt: dict[int, list[float]] = defaultdict(list)
    for d in delays:
        by_attempt[d.attempt].append(d.delay_s)
    bands = {a: (lo, hi) for a, lo, hi in expected}
    return {
        "count": len(delays),
        "p50_s": percentile([d.delay_s for d in delays], 50),
        "p95_s": percentile([d.delay_s for d in delays], 95),
        "by_attempt": {
            str(a): {"count": len(v), "min_s": min(v), "p50_s": percentile(v, 50), "max_s": max(v),
                     "expected_min_s": bands.get(a, (None, None))[0], "expected_max_s": bands.get(a, (None, None))[1]}
            for a, v in sorted(by_attempt.items())
        },
    }


def _data(run: Path, spec: Mapping[str, Any], metrics: Metrics, rows: list[dict[str, Any]],
          pass_rows: list[dict[str, Any]], delays: Sequence[RetryDelay], expected: Sequence[tuple[int, float, float]],
          observed: list[dict[str, Any]], style: PlotStyle) -> dict[str, Any]:
    return {
        "run_dir": str(run.resolve()), "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "plot_language": style.lang, "plot_font": style.family, "spec": spec,
        "meets_thresholds": metrics.meets_thresholds(), "metrics": metrics.to_dict(),
        "thresholds": [{"metric": r["metric"], "value": r["value"], "bound": r["threshold"], "ok": r["ok"]}
                       for r in rows],
        "passes": pass_rows, "retry_delays": _delay_stats(delays, expected),
        "student_report_check": observed, "plots": {name: f"plots/{name}.png" for name in PLOTS},
    }


def _values(run: Path, out: Path, spec: Mapping[str, Any], metrics: Metrics, rows: list[dict[str, Any]],
            pass_rows: list[dict[str, Any]], delays: Sequence[RetryDelay],
            expected: Sequence[tuple[int, float, float]], kills: Sequence[Mapping[str, Any]],
            events: Sequence[Mapping[str, Any]], origin: float, observed_table: str,
            style: PlotStyle) -> dict[str, Any]:
    """Every placeholder of the template, as Markdown."""
    cfg = spec.get("config", {})
    plan = spec.get("plan", {})
    metric_table = _table(["指标", "实测值", "阈值", "结果"],
                          [[METRIC_NAMES.get(r["metric"], r["metric"]), fmt_value(r["metric"], r["value"]),
                            r["threshold"] if r["ok"] is not None else "—", _result_mark(r["ok"])] for r in rows])
    pass_table = _table(
        ["轮次（pass）", "结束方式", "耗时", "提交文档", "服务调用", "重试", "调用失败", "吞吐量", "p50", "p95", "恢复时间"],
        [[p["pass_no"], _EXIT_NAMES.get(p["exit"], p["exit"]), fmt_value("wall_s", p["wall_s"]), p["committed"],
          p["calls"], p["retries"], p["call_failures"], fmt_value("throughput_docs_per_min", p["throughput_docs_per_min"]),
          fmt_value("latency_p50_s", p["latency_p50_s"]), fmt_value("latency_p95_s", p["latency_p95_s"]),
          "—" if p["pass_no"] == 1 else fmt_value("resume_time_s", p["resume_time_s"])] for p in pass_rows])
    reasons = sorted(metrics.failure_reasons.items(), key=lambda kv: -kv[1])
    input_codes = rejected_codes(spec)
    failure_table = (_table(["原因（code）", "类别", "次数"],
                            [[f"`{k}`", "输入被拒绝（400 类）" if k in input_codes else "服务故障（500 类，按调用计）", v]
                             for k, v in reasons]) if reasons else "没有记录到失败。")
    stats = _delay_stats(delays, expected)
    retry_table = (_table(["失败的第几次尝试", "重试次数", "最短", "中位数", "最长", "配置的退避区间"],
                          [[a, s["count"], fmt_value("x_s", s["min_s"]), fmt_value("x_s", s["p50_s"]),
                            fmt_value("x_s", s["max_s"]),
                            "—" if s["expected_min_s"] is None else
                            f"{s['expected_min_s']:.3f} ~ {s['expected_max_s']:.3f} s"]
                           for a, s in stats["by_attempt"].items()])
                   if delays else "本次运行没有记录到重试（没有失败的调用，或失败后没有再试）。")
    integrity = []
    if metrics.duplicates:
        integrity.append("重复执行（duplicate executions）：" + "；".join(d.describe() for d in metrics.duplicates[:10]))
    if metrics.missing:
        integrity.append(f"未完成（missing）{len(metrics.missing)} 篇：" + ", ".join(metrics.missing[:15]))
    if metrics.wrong_output:
        integrity.append("输出与预期不符（wrong output）：" + ", ".join(metrics.wrong_output[:15]))
    integrity_text = ("\n".join(f"- {line}" for line in integrity) if integrity
                      else "- 没有重复执行、没有缺失、没有错误输出：每个幂等键恰好提交一次（exactly-once 结果）。")
    kill_text = "；".join(
        f"第 {k.get('pass')} 轮在 +{float(k['t']) - origin:.2f} s 被杀死（{k.get('kind')}"
        + (f"，第 {k.get('at')} 次" if k.get("at") else "") + "）" for k in kills) or "本次运行没有崩溃。"
    logs = log_excerpt(events, origin)
    for p in sorted(run.glob("pass*.stderr")):
        tail = [line[:200] for line in p.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        if tail:
            logs += ["", f"== {p.name} (last lines) =="] + tail[-8:]
    all_ok = metrics.meets_thresholds()
    resumed = len(metrics.passes) > 1
    verdict = ("✅ 全部验收阈值达标。" if all_ok else
               "❌ 有阈值未达标，见上表；请对照 `checklist.md` 修正后重新运行。")
    if not resumed:
        verdict += " ⚠ 这个运行只有一轮，没有恢复运行：恢复时间无法测量，提交前请用同一个运行目录再跑一次。"
    if not kills:
        verdict += " ⚠ 没有记录到崩溃：请用 `--crash during_call` 等方式注入一次崩溃再提交。"
    rel_out = out
    values = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run_dir": f"`{run}`",
        "impl": f"`{spec.get('impl', '?')}`",
        "input": f"`{spec.get('input', '?')}`",
        "batch_id": f"`{spec.get('batch_id', '?')}`",
        "documents": metrics.total, "unique": metrics.unique, "rejected": metrics.rejected,
        "degraded": metrics.committed_degraded, "completed": metrics.completed,
        "config": (f"并发 {cfg.get('concurrency')}，最多尝试 {cfg.get('max_attempts')} 次，"
                   f"base_delay {cfg.get('base_delay')} s，max_delay {cfg.get('max_delay')} s，"
                   f"jitter {cfg.get('jitter')} s"),
        "fault_plan": (f"种子（seed）{plan.get('seed')}，瞬时故障率 {float(plan.get('transient_rate', 0)) * 100:g} %，"
                       f"永久故障率 {float(plan.get('permanent_rate', 0)) * 100:g} %"),
        "kills": kill_text,
        "passes": len(metrics.passes),
        "verdict": verdict,
        "metric_table": metric_table,
        "pass_table": pass_table,
        "failure_table": failure_table,
        "retry_table": retry_table,
        "retry_count": len(delays),
        "integrity": integrity_text,
        "observability_table": observed_table,
        "log_excerpt": "\n".join(logs),
        "plot_throughput": "plots/throughput.png",
        "plot_latency": "plots/latency.png",
        "plot_failures": "plots/failures.png",
        "plot_passes": "plots/passes.png",
        "plot_retry_delays": "plots/retry_delays.png",
        "plot_language": ("中文（字体 " + str(style.family) + "）") if style.lang == "zh" else
                         "English（本机 matplotlib 没有找到中文字体，图中标签用英文，避免出现方框）",
        "metrics_command": f"`batchlab metrics {run}`",
        "report_command": f"`batchlab report {run} --out {rel_out}`",
        "p50": fmt_value("latency_p50_s", metrics.latency_p50_s),
        "p95": fmt_value("latency_p95_s", metrics.latency_p95_s),
    }
    assert set(values) | {"grader_section"} == TEMPLATE_KEYS, set(values) ^ TEMPLATE_KEYS
    return values


_EXIT_NAMES = {"ok": "正常结束", "killed": "被杀死（SIGKILL）", "died": "进程消失", "student_error": "抛出异常",
               "input_error": "输入错误", "timeout": "超时"}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    run = Path(args.run_dir)
    out = Path(args.out) if args.out else Path("reports") / (run.resolve().name or "run")
    try:
        result = build_report(run_dir=run, out=out, lang=args.lang, template=args.template,
                              grader_results=args.grader_results)
    except (OSError, ValueError, TypeError, KeyError, ArithmeticError, RuntimeError, sqlite3.Error) as exc:
        # build_report checks every part of the run directory; this is the last guard against one it missed
        raise KitError(f"no report for {run}: {type(exc).__name__}: {exc}", code="report_failed",
                       details={"run_dir": str(run), "out": str(out)},
                       hints=["`batchlab metrics RUN_DIR` says whether the run itself can be read."]) from None
    if args.json:
        print(json.dumps({"out": str(result.out), "report": str(result.markdown),
                          "files": [str(f) for f in result.files], "plot_language": result.style.lang,
                          "meets_thresholds": result.meets_thresholds}, ensure_ascii=False, indent=2))
    else:
        print(f"report: {result.markdown}")
        for f in result.files:
            print(f"  {f}")
        print(f"plot labels: {'Chinese (' + str(result.style.family) + ')' if result.style.lang == 'zh' else 'English'}")
        print("all lesson thresholds met" if result.meets_thresholds else "some thresholds are not met")
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="plots and the filled submission template for a run directory")
    p.add_argument("run_dir", type=Path, help="a run directory (from `batchlab demo` or `batchlab run`)")
    p.add_argument("--out", type=Path, default=None,
                   help="a new (or empty) folder for the report (default: reports/<run name>)")
    p.add_argument("--lang", choices=("auto", "zh", "en"), default="auto",
                   help="plot labels: Chinese where a CJK font is found (auto), or force one")
    p.add_argument("--template", type=Path, default=None, help="another Markdown template")
    p.add_argument("--grader-results", type=Path, default=None,
                   help="attach the score table of a `pytest grader` results.json")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_report)
