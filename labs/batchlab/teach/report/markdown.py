"""The report's Markdown: every ``{{ placeholder }}`` of the submission template, as teaching text (Chinese).

Apart from :mod:`.build` (which reads the run and writes the folder) so that the wording of each
section is found in one place; the figures come from :mod:`batchlab.metrics` and :mod:`.views`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import KitError
from ...ledger import PassEnd
from ...metric_table import MetricRow
from ...metrics import Metrics, format_value
from .style import PlotStyle
from .views import RetryDelay, _delay_stats, log_excerpt, rejected_codes

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
    "checkpoint_hit_rate": "检查点命中率（checkpoint hit rate）",
    "upgraded": "补齐升级数（upgraded by backfill）",
}

#: The placeholders a template may use (``{{ name }}``); templates/README.md lists what each one holds.
TEMPLATE_KEYS = frozenset({
    "generated_at", "run_dir", "impl", "input", "batch_id", "documents", "unique", "rejected", "degraded",
    "completed", "config", "fault_plan", "kills", "passes", "verdict", "metric_table", "pass_table",
    "failure_table", "retry_table", "retry_count", "integrity", "observability_table", "log_excerpt",
    "plot_throughput", "plot_latency", "plot_failures", "plot_passes", "plot_retry_delays", "plot_resources",
    "plot_language",
    "metrics_command", "report_command", "p50", "p95", "grader_section", "hit_rate", "upgraded",
    "backfill_command",
})

#: The Chinese name of each way a pass can end (every :class:`~batchlab.ledger.PassEnd`, no other).
_EXIT_NAMES = {PassEnd.OK: "正常结束", PassEnd.KILLED: "被杀死（SIGKILL）", PassEnd.DIED: "进程消失",
               PassEnd.STUDENT_ERROR: "抛出异常", PassEnd.INPUT_ERROR: "输入错误", PassEnd.TIMEOUT: "超时",
               PassEnd.STOPPED: "按请求停止（stopped）", PassEnd.IMPORT_ERROR: "导入失败（import error）"}

def fmt_value(metric: str, value: Any) -> str:
    return format_value(metric, value, per_min_unit="文档/分钟")

def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)

def _result_mark(ok: bool | None) -> str:
    return "仅报告（reported）" if ok is None else ("✅ 达标" if ok else "❌ 未达标")

def _observability(metrics: Metrics) -> tuple[str, list[dict[str, Any]]]:
    """The student's own BatchReport (last pass that returned) beside the ledger's figures."""
    report = next((p.report for p in reversed(metrics.passes) if p.report), None)
    if not report:
        return ("没有任何一轮正常返回 `BatchReport`，无法核对自报指标（pass 全部被杀死或抛出异常）。", [])
    rows: list[dict[str, Any]] = []
    for name in ("completion_rate", "duplicate_rate", "fail_rate"):
        own = report.get(name)
        ledger = metrics.value(name)
        agree = own is not None and ledger is not None and abs(float(own) - float(ledger)) <= 0.01
        rows.append({"metric": name, "student": own, "ledger": ledger, "agree": agree})
    reporter = next(p for p in reversed(metrics.passes) if p.report)
    own_hits, ledger_hits = report.get("checkpoint_hit_rate"), reporter.checkpoint_hit_rate
    ledger_hits = 0.0 if ledger_hits is None else ledger_hits  # a first pass finds nothing finished
    rows.append({"metric": "checkpoint_hit_rate", "student": own_hits, "ledger": ledger_hits,
                 "agree": isinstance(own_hits, (int, float)) and abs(float(own_hits) - ledger_hits) <= 0.01})
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

def fill_template(text: str, values: Mapping[str, Any]) -> str:
    """Replace every ``{{ name }}``; a placeholder without a value is an error, never left in the output."""
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(values))
    if unknown:
        raise KitError(f"the template has placeholders the report does not know: {', '.join(unknown)}",
                       code="template_error", details={"unknown": unknown, "known": sorted(values)},
                       hints=["Use only the placeholders listed in templates/README.md."])
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)

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

def _values(run: Path, out: Path, spec: Mapping[str, Any], metrics: Metrics, rows: Sequence[MetricRow],
            pass_rows: list[dict[str, Any]], delays: Sequence[RetryDelay],
            expected: Sequence[tuple[int, float, float]], kills: Sequence[Mapping[str, Any]],
            events: Sequence[Mapping[str, Any]], origin: float, observed_table: str,
            style: PlotStyle) -> dict[str, Any]:
    """Every placeholder of the template, as Markdown."""
    cfg = spec.get("config", {})
    plan = spec.get("plan", {})
    metric_table = _table(["指标", "实测值", "阈值", "结果"],
                          [[METRIC_NAMES.get(r.metric, r.metric), fmt_value(r.metric, r.value),
                            r.bound if r.judged else "—", _result_mark(r.ok)] for r in rows])
    pass_table = _table(
        ["轮次（pass）", "结束方式", "耗时", "提交文档", "服务调用", "重试", "调用失败", "吞吐量", "p50", "p95", "恢复时间",
         "命中 / 重做（hits / redone）", "升级（upgraded）"],
        [[p["pass_no"], _EXIT_NAMES.get(p["exit"], p["exit"]), fmt_value("wall_s", p["wall_s"]), p["committed"],
          p["calls"], p["retries"], p["call_failures"], fmt_value("throughput_docs_per_min", p["throughput_docs_per_min"]),
          fmt_value("latency_p50_s", p["latency_p50_s"]), fmt_value("latency_p95_s", p["latency_p95_s"]),
          "—" if p["pass_no"] == 1 else fmt_value("resume_time_s", p["resume_time_s"]),
          "—" if p["pass_no"] == 1 else f"{p['hits']} / {p['redone']}（{fmt_value('x_rate', p['checkpoint_hit_rate'])}）",
          p["upgraded"]] for p in pass_rows])
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
        "plot_resources": "plots/resources.png",
        "plot_language": ("中文（字体 " + str(style.family) + "）") if style.lang == "zh" else
                         "English（本机 matplotlib 没有找到中文字体，图中标签用英文，避免出现方框）",
        "metrics_command": f"`batchlab metrics {run}`",
        "report_command": f"`batchlab report {run} --out {rel_out}`",
        "p50": fmt_value("latency_p50_s", metrics.latency_p50_s),
        "p95": fmt_value("latency_p95_s", metrics.latency_p95_s),
        "hit_rate": fmt_value("checkpoint_hit_rate", metrics.checkpoint_hit_rate),
        "upgraded": metrics.upgraded,
        "backfill_command": f"`batchlab backfill {run}`",
    }
    assert set(values) | {"grader_section"} == TEMPLATE_KEYS, set(values) ^ TEMPLATE_KEYS
    return values
