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
* ``upgraded`` (commits of the pass that replaced a degraded output with a full
  one: a backfill, never a duplicate execution) exact, and
  ``checkpoint_hit_rate`` (the valid keys committed before the pass and not executed
  again in it, over ``unique``) within :data:`RATE_TOLERANCE`;
* ``duplicates_in_input`` (valid entries whose key came earlier in the input)
  and ``latency_count`` (one latency per document executed in the pass) exact;
* ``skipped + recovered`` equals the keys committed before the pass that the
  pass did not execute again, and ``recovered`` (committed, but the checkpoint
  did not say so: healed from the sink) is at least the documents committed
  right before an ``after_commit`` kill of the previous pass, at most the keys
  committed in passes that did not end normally (a pass that ends normally
  has recorded every commit in its checkpoint);
* only passes that ended normally (``pass_end``) are compared: a killed pass
  returns no report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchlab.documents import Inventory
from batchlab.ledger import END_EVENTS, Ev, PassEnd
from batchlab.ledger_views import PassMetrics, events_by_pass, first_event, pass_end
from batchlab.metrics import Metrics, pass_metrics

RATE_TOLERANCE = 0.001
RETRY_TOLERANCE = 0.10
COUNT_FIELDS = ("total", "unique", "rejected", "done", "degraded", "failed")
RATE_FIELDS = ("completion_rate", "fail_rate", "duplicate_rate")
RUN_FIELDS = ("executed", "duplicate_executions", "retries", "upgraded")
RESUME_FIELDS = ("duplicates_in_input", "latency_count", "skipped", "recovered")
HIT_FIELDS = ("checkpoint_hit_rate",)
ALL_GROUPS = ("counts", "rates", "run", "resume", "hit rate")


@dataclass
class PassView:
    """The ledger's figures for one pass, in the ``BatchReport`` vocabulary."""

    pass_no: int
    exit: PassEnd
    report: dict[str, Any] | None
    expected: dict[str, float]
    calls: int = 0
    puts: int = 0
    call_idents: set[str] = field(default_factory=set)
    committed_before: set[str] = field(default_factory=set)
    crash: dict[str, Any] | None = None
    student_error: str | None = None
    #: keys committed before this pass and not executed again in it (each must be skipped or recovered)
    resumed: int = 0
    #: bounds of ``recovered``, and the documents behind the lower bound
    recovered_min: int = 0
    recovered_max: int = 0
    must_recover: list[str] = field(default_factory=list)


#: The documents a message names at most (``must_recover``): the count stays exact, the list bounded.
MAX_NAMED = 20


def pass_views(documents: Sequence[Any], events: Sequence[Mapping[str, Any]],
               puts: Sequence[Mapping[str, Any]]) -> list[PassView]:
    """One :class:`PassView` per pass found in the ledger.

    The figures the metrics also have (calls, commits, retries, upgrades, how the pass ended, its
    crash and report) come from their fold (:func:`batchlab.metrics.pass_metrics`), so the grader
    and ``batchlab metrics`` cannot count them differently; the rest is the grader's own.
    """
    inventory = Inventory.of(documents)
    idents = inventory.idents
    folded = {pm.pass_no: pm for pm in pass_metrics(documents, events, puts)}
    ended_ok = {int(e["pass"]) for e in events if e["ev"] == Ev.PASS_END}
    by_pass = events_by_pass(events)
    last_put: dict[str, int] = {}
    views = []
    for p, evs in by_pass.items():
        pm = folded.get(p) or PassMetrics(pass_no=p, started=0.0, ended=None, exit=pass_end(evs))  # no usable line
        before = {q["ident"] for q in puts if int(q["pass"]) < p and q["ident"] in idents}
        resumed = before - {e["ident"] for e in evs if e["ev"] == Ev.SINK_PUT}
        # committed in a pass that did not end normally (its checkpoint may not say so): the most a pass can heal
        unrecorded = {i for i in resumed if last_put.get(i, p) not in ended_ok}
        victims = sorted({e["doc_id"] for e in by_pass.get(p - 1, []) if e["ev"] == Ev.CRASH
                          and e.get("kind") == "after_commit" and e.get("ident") in resumed})
        for q in puts:
            if int(q["pass"]) == p:
                last_put[q["ident"]] = p
        end = first_event(evs, END_EVENTS)
        views.append(PassView(
            pass_no=p, exit=pm.exit, report=pm.report, expected=_expected(inventory, pm, evs, puts, len(resumed)),
            calls=pm.calls, puts=pm.committed, call_idents={e["ident"] for e in evs if e["ev"] == Ev.CALL_START},
            committed_before={q["ident"] for q in puts if int(q["pass"]) < p}, crash=pm.crash,
            student_error=str(end.get("error")) if end is not None and end["ev"] == Ev.STUDENT_ERROR else None,
            resumed=len(resumed), recovered_min=len(victims), recovered_max=len(unrecorded),
            must_recover=victims[:MAX_NAMED]))
    return views


def _expected(inventory: Inventory, pm: PassMetrics, evs: Sequence[Mapping[str, Any]],
              puts: Sequence[Mapping[str, Any]], resumed: int) -> dict[str, float]:
    """The figures a ``BatchReport`` of pass ``pm.pass_no`` must hold, from the ledger and the sink's ``puts``."""
    total, unique, rejected = inventory.total, inventory.unique, inventory.rejected
    latest_mode: dict[str, str] = {}
    for put in puts:
        if int(put["pass"]) <= pm.pass_no:
            latest_mode[put["ident"]] = put["mode"]
    committed = {i for i in latest_mode if i in inventory.idents}
    degraded = {i for i in committed if latest_mode[i] == "degraded"}
    dup_exec = sum(1 for e in evs if e["ev"] == Ev.SINK_PUT and int(e.get("writes", 1)) > 1)
    failed = unique - len(committed)
    return {
        "total": total, "unique": unique, "rejected": rejected,
        "done": len(committed) - len(degraded), "degraded": len(degraded), "failed": failed,
        "executed": pm.committed, "duplicate_executions": dup_exec, "retries": pm.retries,
        "completion_rate": len(committed) / unique if unique else 1.0,
        "fail_rate": (failed + rejected) / total if total else 0.0,
        "duplicate_rate": dup_exec / unique if unique else 0.0,
        "duplicates_in_input": inventory.duplicates_in_input, "latency_count": pm.committed,
        "upgraded": pm.upgraded,
        "checkpoint_hit_rate": resumed / unique if unique else 0.0,
    }


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


def _resume_mismatches(view: PassView) -> list[str]:
    report = view.report or {}
    out = []
    for name in ("duplicates_in_input", "latency_count"):
        got, want = _num(report.get(name)), view.expected[name]
        if got is None:
            out.append(f"{name}: the report has no number (ledger: {want:g})")
        elif got != want:
            what = ("valid entries whose key appeared earlier in the input" if name == "duplicates_in_input"
                    else "documents executed (committed) in this pass, one latency each")
            out.append(f"{name}: report says {got:g}, ledger says {want:g} ({what})")
    skipped, recovered = _num(report.get("skipped")), _num(report.get("recovered"))
    if skipped is None or recovered is None:
        out.append("skipped/recovered: the report has no number "
                   f"(ledger: {view.resumed} keys committed before this pass and not redone)")
        return out
    if skipped + recovered != view.resumed:
        out.append(f"skipped + recovered: report says {skipped:g} + {recovered:g}, ledger says {view.resumed} "
                   "(keys committed before this pass and not executed again: each is skipped, or recovered from "
                   "the sink)")
    if recovered < view.recovered_min:
        out.append(f"recovered: report says {recovered:g}, ledger says at least {view.recovered_min} "
                   f"({some(view.must_recover, 3)} committed right before the previous pass was killed, so its "
                   "checkpoint never said done: healed from the sink)")
    elif recovered > view.recovered_max:
        out.append(f"recovered: report says {recovered:g}, ledger says at most {view.recovered_max} (only keys "
                   "committed in a pass that was killed can be missing from the checkpoint; the others are skipped)")
    return out


def report_mismatches(view: PassView, groups: Sequence[str] = ALL_GROUPS) -> list[str]:
    """What the report of one pass says that the ledger contradicts (empty when they agree)."""
    report = view.report or {}
    wanted = {"counts": COUNT_FIELDS, "rates": RATE_FIELDS, "run": RUN_FIELDS, "hit rate": HIT_FIELDS}
    out = []
    for group in groups:
        if group == "resume":
            out.extend(_resume_mismatches(view))
            continue
        for name in wanted[group]:
            got, want = _num(report.get(name)), view.expected[name]
            if got is None:
                out.append(f"{name}: the report has no number (ledger: {_fmt(name, want)})")
                continue
            if name in RATE_FIELDS or name in HIT_FIELDS:
                ok = abs(got - want) <= RATE_TOLERANCE
            elif name == "retries":
                ok = abs(got - want) <= max(2.0, RETRY_TOLERANCE * want)
            else:
                ok = got == want
            if not ok:
                out.append(f"{name}: report says {_fmt(name, got)}, ledger says {_fmt(name, want)}")
    return out


def agreement_failures(views: Sequence[PassView], groups: Sequence[str] = ALL_GROUPS) -> list[str]:
    """Mismatches of every pass that returned a report, each prefixed with its pass."""
    out = []
    for view in views:
        if view.exit != PassEnd.OK:
            continue
        if view.report is None:
            out.append(f"pass {view.pass_no}: no report returned")
            continue
        out.extend(f"pass {view.pass_no}: {m}" for m in report_mismatches(view, groups))
    return out


#: The contract's rules behind the report's figures (module docstring of the reference, DESIGN item 6), by the
#: field whose mismatch breaks them: an English invariant id to search for, then the rule in Chinese.
RULES: dict[str, str] = {
    "failed": ("failed-counts-valid-only: BatchReport.failed 只数有效文档（valid documents）中最后处于 failed 的键；"
               "无效输入（invalid input，parse_document 抛出 InvalidDocumentError）记在 rejected，不记在 failed，"
               "所以 done + degraded + failed == unique。"),
    "rejected": ("rejected-counts-invalid-inputs: BatchReport.rejected 是无效输入条目（invalid entries）的个数，"
                 "每条都算，也包括恢复运行（resume）里再次读到的；它们不进入 unique，也不进入 failed。"),
    "fail_rate": ("fail-rate-definition: 失败率（fail rate）= (failed + rejected) / total，其中 failed 只数有效文档。"),
    "skipped + recovered": ("skipped-plus-recovered: 恢复运行（resume）时，之前已提交（committed）且这次没有重做的每个键，"
                            "要么算 skipped（检查点里已是 done/degraded），要么算 recovered（sink 里已提交但检查点还没记下，"
                            "从 sink 修复检查点）；两者之和等于这些键的个数，一个不多，一个不少。"),
    "recovered": ("recovered-counts-healed-keys: recovered 只数从 sink 修复（heal）的键：在崩溃（crash）前写进 sink、"
                  "检查点却没来得及标记 done 的文档；检查点里已是 done 的键算 skipped。"),
    "duplicates_in_input": ("duplicates-in-input-counted: duplicates_in_input 是输入里与前面某个有效文档同键"
                            "（same idempotency key）的有效条目数，每次运行都要数。"),
    "latency_count": ("latency-per-executed-document: latencies_s 对本次运行执行（executed）的每个文档各有一个值"
                      "（从 processing 到提交），跳过和修复的文档没有。"),
    "checkpoint_hit_rate": ("hit-rate-counts-checkpoint-and-sink: 检查点命中率（checkpoint hit rate）= 本次运行发现已完成、"
                            "没有再做的有效键 / unique，即 (skipped + recovered) / unique：检查点里已是 done/degraded 的键"
                            "（skipped）和从 sink 修复的键（recovered）都算命中；首次运行为 0。"),
    "upgraded": ("upgrade-is-not-a-duplicate: upgraded 数本次运行把降级输出（degraded）换成完整输出（full）的键"
                 "（后续标记待补，backfill）；sink.put 不把升级（upgrade）算作重复执行，所以它也不进 duplicate_executions。"),
    "unique": ("unique-counts-valid-keys: unique 是有效文档的不同幂等键（idempotency key）个数，重复发送的文档只算一次。"),
}


def rules_for(mismatches: Sequence[str]) -> list[str]:
    """The contract's rules that a list of mismatches breaks (each line: an invariant id, then the rule in Chinese)."""
    out = []
    for name, rule in RULES.items():
        if any(m.split(": ", 1)[-1].startswith(f"{name}:") or m.startswith(f"{name}:") for m in mismatches):
            out.append(rule)
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
