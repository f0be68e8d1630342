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
import shutil
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import EXIT_OK, KitError, UsageError
from ...ledger import RESOURCE_EVENT, Ev, read_events
from ...metrics import MetricRow, Metrics, metric_rows, metrics_for_run, usable_events
from ...paths import kit_root
from ...rundir import RunDir
from ...runner import read_spec
from .markdown import TEMPLATE_KEYS, _observability, _values, fill_template, grader_section
from .plots import plot_failures, plot_latency, plot_passes, plot_resources, plot_retry_delays, plot_throughput
from .style import PlotStyle, choose_style
from .views import RetryDelay, _delay_stats, expected_backoff, interruptions, rejected_codes, retry_delays

TEMPLATE = Path("templates/submission-report.md")

PLOTS = ("throughput", "latency", "failures", "passes", "retry_delays", "resources")

def template_path() -> Path:
    return kit_root() / TEMPLATE

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

def _check_run_dir(run: Path) -> None:
    if not run.is_dir() or not RunDir(run).spec.is_file():
        raise UsageError(f"{run} is not a run directory", code="not_a_run", details={"run_dir": str(run)},
                         hints=["A run directory has spec.json and ledger.jsonl; make one with "
                                "`batchlab demo --run-dir DIR` or `batchlab run --run-dir DIR`."])
    if not usable_events(read_events(RunDir(run).ledger)):
        raise UsageError(f"{RunDir(run).ledger} has no events", code="empty_ledger",
                         details={"run_dir": str(run), "ledger": str(RunDir(run).ledger)},
                         hints=["Run at least one pass first: `batchlab run --input FILE --run-dir "
                                f"{run}`.", "A pass that died before its first event leaves nothing to report."])

def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty", code="output_exists", details={"out": str(out)},
                         hints=["Choose a new --out folder; an earlier report is never overwritten."])

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
    spec = read_spec(run).to_dict()  # a damaged spec, input, sink or ledger: a KitError naming it, never a traceback
    events = usable_events(read_events(RunDir(run).ledger))
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
                        commits=[float(e["t"]) - origin for e in events if e.get("ev") == Ev.SINK_PUT],
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
        samples = [(float(e["t"]) - origin, float(e.get("cpu_percent") or 0), float(e.get("rss_bytes") or 0) / 2**20,
                    int(e.get("pass") or 0)) for e in events if e.get("ev") == RESOURCE_EVENT]
        plot_resources(tmp / "plots/resources.png", samples=samples, kills=[float(k["t"]) - origin for k in kills],
                       style=style)

        data = _data(run, spec, metrics, rows, pass_rows, delays, expected, observed, style)
        data["resource_samples"] = len(samples)
        (tmp / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n",
                                         encoding="utf-8")
        _write_csv(tmp / "metrics.csv", ["metric", "value", "threshold", "ok"],
                   [[r.metric, r.value, r.bound, "" if r.ok is None else r.ok] for r in rows])
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

def _write_csv(path: Path, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(head)
        writer.writerows(rows)

def _data(run: Path, spec: Mapping[str, Any], metrics: Metrics, rows: Sequence[MetricRow],
          pass_rows: list[dict[str, Any]], delays: Sequence[RetryDelay], expected: Sequence[tuple[int, float, float]],
          observed: list[dict[str, Any]], style: PlotStyle) -> dict[str, Any]:
    return {
        "run_dir": str(run.resolve()), "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "plot_language": style.lang, "plot_font": style.family, "spec": spec,
        "meets_thresholds": metrics.meets_thresholds(), "metrics": metrics.to_dict(),
        "thresholds": [{"metric": r.metric, "value": r.value, "bound": r.bound, "ok": r.ok} for r in rows],
        "passes": pass_rows, "retry_delays": _delay_stats(delays, expected),
        "student_report_check": observed, "plots": {name: f"plots/{name}.png" for name in PLOTS},
    }

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
