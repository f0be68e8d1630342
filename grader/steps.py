"""The lesson's steps (notebook ``NN`` = step name): the harness's one definition, re-exported for the grader."""

from __future__ import annotations

from batchlab.steps import STEPS, step_number
from batchlab.steps import normalize_step as parse_step

__all__ = ["STEPS", "parse_step", "step_number"]
