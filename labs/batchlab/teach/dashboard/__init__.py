"""The teacher dashboard: its vocabulary (board), a plain-Python model, pure HTML/SVG renderers, the ipywidgets view.

``from batchlab.teach.dashboard import Dashboard`` is the notebook's import. The view is loaded
lazily, so importing :mod:`.model` (tests, the browser test's server) never needs the view.
"""

from __future__ import annotations

__all__ = ["Dashboard", "show"]


def __getattr__(name: str) -> object:
    """``Dashboard`` and ``show`` come from :mod:`.view`, imported on first use."""
    if name in __all__:
        from . import view

        return getattr(view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
