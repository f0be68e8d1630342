"""The lesson's steps, one name per notebook: shared by the grader, the notebooks and ``batchlab check``."""

from __future__ import annotations

from .errors import KitError

#: Notebook number -> step name.
STEPS: dict[str, str] = {
    "01": "checkpoint",
    "02": "idempotency",
    "03": "backoff",
    "04": "concurrency",
    "05": "resume",
    "06": "metrics",
}


class UnknownStepError(KitError, ValueError):
    """A step that does not exist was named."""

    default_code = "unknown_step"


def normalize_step(step: str | int) -> str:
    """``"checkpoint"``, ``"01"``, ``"1"`` and ``1`` all name step ``checkpoint``."""
    text = str(step).strip().lower()
    if text in STEPS.values():
        return text
    if text.isdigit() and f"{int(text):02d}" in STEPS:
        return STEPS[f"{int(text):02d}"]
    raise UnknownStepError(
        f"unknown step {step!r}; one of {', '.join(f'{k} ({v})' for k, v in STEPS.items())}",
        details={"step": str(step), "steps": dict(STEPS)},
        hints=[f"Use one of: {', '.join(STEPS.values())} (or its notebook number 01-06)."],
    )


def step_number(step: str) -> str:
    """The notebook number of a step name (``"checkpoint"`` -> ``"01"``; ``"??"`` for an unknown step)."""
    return next((num for num, value in STEPS.items() if value == str(step)), "??")
