"""The lesson's metric table as rows: the thresholds judged, then the figures that are only reported.

One builder (:func:`metric_rows`) for every place that shows the table: the text table of
``batchlab run``/``demo``/``metrics`` and chaos (:func:`format_table`), the dashboard's HTML
(``teach/dashboard/render.py``) and the report's Markdown and CSV (``teach/report``). Each renders
the same :class:`MetricRow` values in its own dress; none decides again which figures there are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .thresholds import THRESHOLDS, Threshold

if TYPE_CHECKING:  # metrics imports this module to re-export it
    from .metrics import Metrics

#: The figures reported beside the thresholds, never judged (name, label).
REPORTED: tuple[tuple[str, str], ...] = (
    ("throughput_docs_per_min", "throughput"),
    ("latency_p50_s", "latency p50"),
    ("latency_p95_s", "latency p95"),
    ("retries", "retries"),
    ("checkpoint_hit_rate", "checkpoint hit rate"),
    ("upgraded", "upgraded (backfill)"),
)
#: The bound column of a reported figure.
REPORTED_BOUND = "reported"


def format_value(metric: str, value: Any, *, per_min_unit: str = "docs/min") -> str:
    """One figure as the tables show it, by the metric's name: rates in %, ``*_s`` in seconds."""
    if value is None:
        return "n/a"
    if metric.endswith("_rate"):
        return f"{float(value) * 100:.2f} %"
    if metric.endswith("_s"):
        return f"{float(value):.3f} s"
    if metric.endswith("per_min"):
        return f"{float(value):,.0f} {per_min_unit}"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class MetricRow:
    """One line of the metric table; ``ok`` is None for a figure that is reported, not judged."""

    metric: str
    label: str
    value: float | int | None
    bound: str
    ok: bool | None

    @property
    def text(self) -> str:
        """The value as the text table and the dashboard show it."""
        return format_value(self.metric, self.value)

    @property
    def judged(self) -> bool:
        return self.ok is not None


def metric_rows(metrics: Metrics, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> tuple[MetricRow, ...]:
    """Each threshold with its measured value and verdict, then the reported figures that have no threshold."""
    rows = [MetricRow(name, t.label, value, t.text, ok)
            for name, (t, value, ok) in zip(thresholds, metrics.checks(thresholds), strict=True)]
    rows += [MetricRow(name, label, metrics.value(name), REPORTED_BOUND, None)
             for name, label in REPORTED if name not in thresholds]
    return tuple(rows)


def format_table(metrics: Metrics, thresholds: Mapping[str, Threshold] = THRESHOLDS) -> str:
    """The lesson's metric table as text: each figure, its threshold and PASS/FAIL (or 'reported')."""
    rows = [(r.label, r.text, r.bound, "" if r.ok is None else "PASS" if r.ok else "FAIL")
            for r in metric_rows(metrics, thresholds)]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    head = f"{'metric':<{width[0]}}  {'value':>{width[1]}}  {'threshold':<{width[2]}}  result"
    lines = [head, "-" * len(head)]
    lines += [f"{a:<{width[0]}}  {b:>{width[1]}}  {c:<{width[2]}}  {d}".rstrip() for a, b, c, d in rows]
    return "\n".join(lines)
