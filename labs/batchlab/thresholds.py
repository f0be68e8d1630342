"""The lesson's thresholds, read from the single file ``thresholds.toml`` beside this module.

The demo, the dashboard, the grader (``grader/thresholds.py`` re-exports this) and
a test over ``checklist.md`` all use this one file, so no two places can disagree.
It lives in the harness because the harness may depend on nothing else in the
kit; a grading TA can point the grader at another file with ``--thresholds``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class Threshold:
    """A bound on one metric: ``min`` (at least) or ``max`` (at most)."""

    metric: str
    label: str
    min: float | None = None
    max: float | None = None

    def passes(self, value: float | None) -> bool:
        """None (never measured) or NaN fails every bound."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.min is not None and value < self.min:
            return False
        if self.max is not None and value > self.max:
            return False
        return True

    @property
    def text(self) -> str:
        """``>= 99 %``, ``<= 60 s`` ...: the bound as the lesson writes it."""
        bound, op = (self.min, ">=") if self.min is not None else (self.max, "<=")
        assert bound is not None
        if self.metric.endswith("_rate"):
            return f"{op} {bound * 100:g} %"
        return f"{op} {bound:g} s"


def load_thresholds(path: str | Path | None = None) -> dict[str, Threshold]:
    data = tomllib.loads(Path(path or THRESHOLDS_FILE).read_text(encoding="utf-8"))
    return {
        name: Threshold(metric=name, label=str(spec.get("label", name)), min=spec.get("min"), max=spec.get("max"))
        for name, spec in data.items()
    }


THRESHOLDS = load_thresholds()
