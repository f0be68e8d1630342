"""The grader's thresholds: a re-export of the kit's single threshold file.

The one file is ``labs/batchlab/thresholds.toml`` (read by :mod:`batchlab.thresholds`).
It lives in the harness, not here, because the harness must not depend on the
grader (docs/design.md, principle 4) while the demo, the dashboard, ``checklist.md`` and the
grader all read it; a TA can point the grader at another file with
``pytest grader --thresholds FILE``.
"""

from batchlab.thresholds import THRESHOLDS, THRESHOLDS_FILE, Threshold, load_thresholds

__all__ = ["THRESHOLDS", "THRESHOLDS_FILE", "Threshold", "load_thresholds"]
