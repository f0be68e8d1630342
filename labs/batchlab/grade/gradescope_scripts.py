"""The two scripts of the Gradescope autograder zip (``batchlab autograder``), kept as text here so that the
wheel needs no package data. Gradescope runs ``setup.sh`` once as root when it builds the image, and
``/autograder/run_autograder`` (a copy of the zip's) per submission with ``/autograder`` as the working folder.

``setup.sh``'s knobs exist for the kit's own test, which runs it without network in a simulated ``/autograder``:
``BATCHLAB_PYTHON`` (an interpreter >= 3.11: skips apt), ``BATCHLAB_PIP_ARGS`` (e.g. ``--no-deps --no-index``).
"""

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope autograder setup for the Lesson 15 kit (written by `batchlab autograder`).
# Runs once, as root, when Gradescope builds the image. Base image: Ubuntu 22.04, whose python3 is 3.10;
# the kit needs Python >= 3.11, so python3.11 comes from Ubuntu's own jammy-updates (universe) archive.
set -euo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${BATCHLAB_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends python3.11 python3.11-venv bubblewrap
    PYTHON=python3.11
fi
"$PYTHON" -m venv /autograder/venv
# The kit from the zip's own wheel; its dependencies from PyPI (Gradescope builds with network access).
/autograder/venv/bin/python -m pip install ${BATCHLAB_PIP_ARGS:-} "$SOURCE"/kit/batchlab-*.whl
/autograder/venv/bin/python -c "import batchlab.grade.gradescope"
echo "batchlab autograder: setup done"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this once per submission, in /autograder, as root (written by `batchlab autograder`).
# The grader (hidden scenarios included) grades /autograder/submission/document_processor.py and writes
# /autograder/results/results.json; if even that fails, a results file that says so is written here.
export BATCHLAB_ROOT=/autograder/source/kit
mkdir -p /autograder/results
if ! /autograder/venv/bin/python -m batchlab.grade.gradescope --root /autograder; then
    if [ ! -s /autograder/results/results.json ]; then
        printf '%s\n' '{"score": 0, "output": "The autograder could not run the grader. Please tell your teacher."}' \
            > /autograder/results/results.json
    fi
fi
"""
