"""The lesson's steps, shared with the notebooks and ``batchlab check``: notebook ``NN`` = step name."""

from __future__ import annotations

STEPS: dict[str, str] = {
    "01": "checkpoint",
    "02": "idempotency",
    "03": "backoff",
    "04": "concurrency",
    "05": "resume",
    "06": "metrics",
}


def parse_step(text: str) -> str:
    """``"checkpoint"``, ``"01"`` or ``"1"`` -> ``"checkpoint"``; ValueError for anything else."""
    value = text.strip().lower()
    if value in STEPS.values():
        return value
    if value.isdigit() and f"{int(value):02d}" in STEPS:
        return STEPS[f"{int(value):02d}"]
    choices = ", ".join(f"{k} ({v})" for k, v in STEPS.items())
    raise ValueError(f"unknown step {text!r}; one of {choices}")


def step_number(name: str) -> str:
    return next(k for k, v in STEPS.items() if v == name)
