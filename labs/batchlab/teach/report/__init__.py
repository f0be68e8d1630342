"""``batchlab report``: the submission report (metric table, plots, filled template) of a run directory.

``from batchlab.teach.report import build_report`` is the notebook's import; it is loaded on first
use, and matplotlib only when a plot is drawn.
"""

from __future__ import annotations

__all__ = ["build_report"]


def __getattr__(name: str) -> object:
    """``build_report`` comes from :mod:`.build`, imported on first use."""
    if name in __all__:
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
