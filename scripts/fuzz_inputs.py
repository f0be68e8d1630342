"""The property-based input tests with a larger budget (issue 14): minutes, not CI's seconds.

    python scripts/fuzz_inputs.py              # 50 x the CI budgets, a new random seed
    python scripts/fuzz_inputs.py --scale 200  # longer

It runs ``tests/batchlab/test_properties.py`` with ``HYPOTHESIS_SCALE`` set: arbitrary
bytes and JSON values into ``load_batch``, ``batchlab validate`` and ``batchlab run``
(exit 0, or exit 2 with the unified error in strict JSON; a refused run leaves a
finished run directory unchanged). A failure prints the smallest input Hypothesis
found; add it to ``tests/batchlab/test_documents.py`` as a fixed case.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50, help="multiply the CI example budgets by this")
    args = parser.parse_args()
    env = {**os.environ, "HYPOTHESIS_SCALE": str(args.scale)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(ROOT / "tests" / "batchlab" / "test_properties.py")]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
