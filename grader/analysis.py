"""What the ledger says a run did, pass by pass, and whether the student's own report agrees.

The ledger and the sink (written by the harness, never by student code) are the
ground truth. :func:`pass_views` rebuilds, for every pass, the figures a
``BatchReport`` of that pass must contain; :func:`report_mismatches` compares
them with the report the processor returned.

Agreement rules (also in ``grader/README.md``):

* state counts (``total``, ``unique``, ``rejected``, ``done``, ``degraded``,
  ``failed``) and per-run counts (``executed``, ``duplicate_executions``) must
  be exact: they are counts of things that happened;
* rates (``completion_rate``, ``fail_rate``, ``duplicate_rate``) must be within
  :data:`RATE_TOLERANCE` (0.1 percentage point) of the ledger's;
* ``retries`` may differ by :data:`RETRY_TOLERANCE` of the ledger's figure or
  2, whichever is larger (a processor may count a retry that a kill interrupted
  before its call);
* only passes that ended normally (``pass_end``) are compared: a killed pass
  returns no report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchlab.documents import Document, try_parse, ident_of
from batchlab.metrics import Metrics

RATE_TOLERANCE = 0.001
RETRY_TOLERANCE = 0.10
COUNT_FIELDS = ("total", "unique", "rejected", "done", "degraded", "failed")
RATE_FIELDS = ("completion_rate", "fail_rate", "duplicate_rate")
RUN_FIELDS = ("executed", "duplicate_executions", "retries")


@dataclass
class PassView:
    """The ledger's figures for one pass, in the ``BatchReport`` vocabulary."""

    pass_no: int
    exit: str
    report: dict[str, Any] | None
    expected: dict[str, float]
    calls: int = 0
    puts: int = 0
    call_idents: set[str] = field(default_factory=set)
    committed_before: set[str] = field(default_factory=set)
    crash: dict[str, Any] | None = None
    student_error: str | None = None


def pass_views(documents: Sequence[Any], events: Sequence[Mapping[str, Any]],
               puts: Sequence[Mapping[str, Any]]) -> list[PassView]:
    """One :class:`PassView` per pass found in the ledger."""
    idents: set[str] = set()
    rejected = 0
    for raw in documents:
        parsed = try_parse(raw)
        if isinstance(parsed, Document):
            idents.add(ident_of(parsed))
        else:
            rejected += 1
    total, unique = len(documents), len(idents)
    passes = sorted({int(e.get("pass", 0)) for e in events if int(e.get("pass", 0)) > 0})
    views = []
    for p in passes:
        evs = [e for e in events if int(e.get("pass", 0)) == p]
        latest_mode: dict[str, str] = {}
        for put in puts:
            if int(put["pass"]) <= p:
                latest_mode[put["ident"]] = put["mode"]
        committed = {i for i in latest_mode if i in idents}
        degraded = {i for i in committed if latest_mode[i] == "degraded"}
        sink_puts = [e for e in evs if e["ev"] == "sink_put"]
        dup_exec = sum(1 for e in sink_puts if int(e.get("writes", 1)) > 1)
        retries = sum(1 for e in evs if e["ev"] == "call_start" and int(e.get("attempt", 1)) > 1)
        failed = unique - len(committed)
        expected = {
            "total": total, "unique": unique, "rejected": rejected,
            "done": len(committed) - len(degraded), "degraded": len(degraded), "failed": failed,
            "executed": len(sink_puts), "duplicate_executions": dup_exec, "retries": retries,
            "completion_rate": len(committed) / unique if unique else 1.0,
            "fail_rate": (failed + rejected) / total if total else 0.0,
            "duplicate_rate": dup_exec / unique if unique else 0.0,
        }
        end = next((e for e in evs if e["ev"] in ("pass_end", "student_error", "input_error")), None)
        crash = next((e for e in evs if e["ev"] in ("crash", "kill")), None)
        timeout = next((e for e in evs if e["ev"] == "timeout"), None)
        exit_kind = ("timeout" if timeout else "killed" if crash else
                     "ok" if end is not None and end["ev"] == "pass_end" else
                     end["ev"] if end is not None else "died")
        views.append(PassView(
            pass_no=p, exit=exit_kind, report=end.get("report") if end is not None and end["ev"] == "pass_end"
            else None, expected=expected, calls=sum(1 for e in evs if e["ev"] == "call_start"),
            puts=len(sink_puts), call_idents={e["ident"] for e in evs if e["ev"] == "call_start"},
            committed_before={q["ident"] for q in puts if int(q["pass"]) < p},
            crash=dict(crash) if crash else None,
            student_error=str(end.get("error")) if end is not None and end["ev"] == "student_error" else None))
    return views


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "missing"
    if name.endswith("_rate"):
        return f"{value * 100:.2f} %"
    return f"{value:g}"


def report_mismatches(view: PassView, groups: Sequence[str] = ("counts", "rates", "run")) -> list[str]:
    """What the report of one pass says that the ledger contradicts (empty when they agree)."""
    report = view.report or {}
    wanted = {"counts": COUNT_FIELDS, "rates": RATE_FIELDS, "run": RUN_FIELDS}
    out = []
    for group in groups:
        for name in wanted[group]:
            got, want = _num(report.get(name)), view.expected[name]
            if got is None:
                out.append(f"{name}: the report has no number (ledger: {_fmt(name, want)})")
                continue
            if name in RATE_FIELDS:
                ok = abs(got - want) <= RATE_TOLERANCE
            elif name == "retries":
                ok = abs(got - want) <= max(2.0, RETRY_TOLERANCE * want)
            else:
                ok = got == want
            if not ok:
                out.append(f"{name}: report says {_fmt(name, got)}, ledger says {_fmt(name, want)}")
    return out


def agreement_failures(views: Sequence[PassView], groups: Sequence[str] = ("counts", "rates", "run")) -> list[str]:
    """Mismatches of every pass that returned a report, each prefixed with its pass."""
    out = []
    for view in views:
        if view.exit != "ok":
            continue
        if view.report is None:
            out.append(f"pass {view.pass_no}: no report returned")
            continue
        out.extend(f"pass {view.pass_no}: {m}" for m in report_mismatches(view, groups))
    return out


def some(ids: Sequence[str], n: int = 5) -> str:
    """``doc-1, doc-2, doc-3 ... (+7 more)``."""
    ids = list(ids)
    head = ", ".join(ids[:n])
    return head + (f" ... (+{len(ids) - n} more)" if len(ids) > n else "")


def completion_detail(metrics: Metrics) -> str:
    parts = []
    if metrics.missing:
        parts.append(f"missing: {some(metrics.missing)}")
    if metrics.wrong_output:
        parts.append(f"wrong output: {some(metrics.wrong_output)}")
    return "; ".join(parts)


def duplicate_detail(metrics: Metrics) -> str:
    return "; ".join(d.describe() for d in metrics.duplicates[:5]) + (
        f" ... (+{len(metrics.duplicates) - 5} more)" if len(metrics.duplicates) > 5 else "")
