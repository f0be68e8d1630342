"""What an import costs (click's ``test_light_imports``): the harness and the CLI load no heavy library.

A student's ``import batchlab.contract``, the worker the runner starts for every pass, and
``batchlab --help`` must start fast and must not need a display stack: matplotlib, ipywidgets,
pandas and web frameworks are imported only inside the functions that draw, display or serve, and psycopg (the
PostgreSQL store) only by the `pg*` modules that `--store postgresql://...` loads.
Each case runs in a fresh interpreter, so nothing another test imported can hide a heavy import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "ipywidgets", "pandas", "fastapi", "starlette", "flask", "uvicorn", "IPython", "psycopg")

#: Each case: the code that runs, then the modules it loaded are compared with HEAVY.
CASES = {
    "import batchlab": "import batchlab",
    "import batchlab.contract": "import batchlab.contract",
    "import batchlab.worker": "import batchlab.worker",
    "batchlab --help": (
        "import contextlib, io\n"
        "import batchlab.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    batchlab.cli.main(['--help'])\n"
    ),
    "from batchlab import check": "from batchlab import check",
}


def loaded_modules(code: str) -> list[str]:
    """The names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def heavy_among(modules: list[str]) -> list[str]:
    """The heavy libraries (top-level names) among ``modules``."""
    return sorted({m.split(".")[0] for m in modules if m.split(".")[0] in HEAVY})


@pytest.mark.parametrize("code", CASES.values(), ids=CASES.keys())
def test_the_harness_and_the_cli_load_no_heavy_library(code: str) -> None:
    """Importing the harness, the CLI's help and the notebooks' ``check`` loads no plotting, widget or web library."""
    assert heavy_among(loaded_modules(code)) == []


def test_importing_the_package_loads_no_front_end() -> None:
    """``import batchlab`` loads none of ``batchlab.teach``: ``check`` is imported on first use."""
    assert [m for m in loaded_modules("import batchlab") if m.startswith("batchlab.teach")] == []


def test_the_check_can_fail() -> None:
    """A heavy import is seen: the probe is not blind (matplotlib is installed with the kit)."""
    assert heavy_among(loaded_modules("import matplotlib")) == ["matplotlib"]
