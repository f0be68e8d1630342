"""batchlab.host: the platforms the kit supports, the portable fallbacks, and the stop on native Windows.

The macOS path is the portable one: ``BATCHLAB_FORCE_PORTABLE=1`` forces it on
Linux, and the end-to-end tests below run the demo, a step check and the grader
on the reference with it, in child processes that inherit the switch. The children's
limits, group kill and death with their parent are ``tests/batchlab/test_childproc.py``'s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from batchlab.host import (
    FORCE_PORTABLE_ENV,
    UnsupportedPlatformError,
    capabilities,
    require_supported_platform,
)
from batchlab.paths import kit_root, solution_module

LINUX = sys.platform.startswith("linux")


def portable_env(**extra: str) -> dict[str, str]:
    return {**os.environ, FORCE_PORTABLE_ENV: "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


class TestCapabilities:
    @pytest.mark.skipif(not LINUX, reason="the Linux facilities exist on Linux only")
    def test_linux_uses_every_limit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(FORCE_PORTABLE_ENV, raising=False)
        caps = capabilities()
        assert caps.supported and caps.linux_facilities and not caps.portable_forced
        assert caps.rlimits == ("cpu", "address_space", "file_size", "processes")

    def test_the_switch_forces_the_portable_fallbacks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(FORCE_PORTABLE_ENV, "1")
        caps = capabilities()
        assert caps.portable_forced and not caps.linux_facilities
        assert caps.rlimits == ("cpu", "file_size", "processes")  # macOS does not enforce an address-space limit
        assert caps.process_groups  # POSIX: sessions and group kills stay

    @pytest.mark.parametrize("value", ["", "0", "false", "no"])
    def test_an_empty_or_negative_switch_is_off(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv(FORCE_PORTABLE_ENV, value)
        assert not capabilities().portable_forced


class TestNativeWindows:
    """A native-Windows start, simulated by patching ``sys.platform`` after the interpreter has started."""

    def test_linux_and_macos_are_supported(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("linux", "darwin"):
            monkeypatch.setattr(sys, "platform", name)
            require_supported_platform()

    def test_the_error_is_the_unified_one_with_both_ways_out(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sys, "platform", "win32")
        with pytest.raises(UnsupportedPlatformError) as info:
            require_supported_platform()
        error = info.value.to_dict()["error"]
        assert error["code"] == "unsupported_platform"
        assert error["details"]["platform"] == "win32"
        assert any("WSL2" in h for h in error["hints"]) and any("hosted setup" in h for h in error["hints"])

    def test_batchlab_stops_at_once_with_the_unified_error_and_exit_2(self, tmp_path: Path) -> None:
        run_dir = tmp_path / "run"
        code = textwrap.dedent(f"""
            import sys
            from batchlab.cli import main
            sys.platform = "win32"
            sys.exit(main(["demo", "--run-dir", {str(run_dir)!r}]))
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        error = json.loads(proc.stdout)["error"]
        assert error["code"] == "unsupported_platform"
        assert any("WSL2" in h for h in error["hints"])
        assert not run_dir.exists()  # stopped before anything ran

    @pytest.mark.slow
    def test_the_notebooks_first_cells_stop_with_the_unified_error(self, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """The committed first cells of a step notebook and of the teacher demo, run in a real kernel."""
        nbformat = pytest.importorskip("nbformat")
        nbclient = pytest.importorskip("nbclient")
        for var in ("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
            monkeypatch.setenv(var, str(tmp_path / var.lower()))
        firsts = []
        for name in ("01_checkpoint.ipynb", "teacher_demo.ipynb"):
            nb = nbformat.read(kit_root() / "notebooks" / name, as_version=4)
            firsts.append(next(c.source for c in nb.cells if c.cell_type == "code"))
        patch = "import sys\nimport matplotlib.pyplot, pandas  # imported as on Linux\nsys.platform = 'win32'"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in (patch, *firsts)])
        nbclient.NotebookClient(nb, kernel_name="python3", timeout=180, allow_errors=True,
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        assert not [o for o in nb.cells[0].outputs if o.output_type == "error"]
        for cell in nb.cells[1:]:
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert len(errors) == 1, f"the cell did not stop:\n{cell.source}"
            assert errors[0].ename == "UnsupportedPlatformError"
            # IPython shows the unified error alone, not a traceback (``_render_traceback_``)
            shown = json.loads("\n".join(errors[0].traceback))
            assert shown["error"]["code"] == "unsupported_platform"


@pytest.mark.slow
class TestForcedFallbacksEndToEnd:
    """The macOS path on Linux: demo, a step check and the grader on the reference, with the fallbacks forced."""

    def test_the_demo_meets_every_threshold(self, tmp_path: Path) -> None:
        proc = subprocess.run(["batchlab", "demo", "--run-dir", str(tmp_path / "run"), "--json"],
                              capture_output=True, text=True, cwd=tmp_path, env=portable_env(), timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        demo = json.loads(proc.stdout)
        assert demo["crash"]["fired"] and [p["outcome"] for p in demo["passes"]] == ["killed", "ok"]
        assert demo["ok"] and all(t["ok"] for t in demo["thresholds"].values())

    def test_a_step_check_passes_on_the_reference(self, tmp_path: Path) -> None:
        proc = subprocess.run(["batchlab", "check", "checkpoint", "--impl", str(solution_module()), "--json"],
                              capture_output=True, text=True, cwd=tmp_path, env=portable_env(), timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert result["status"] == "passed" and result["tests"]
        assert all(t["passed"] and t["score"] == t["max_score"] for t in result["tests"])

    def test_the_grader_gives_the_reference_full_marks(self, tmp_path: Path) -> None:
        results = tmp_path / "grader-results" / "results.json"
        proc = subprocess.run([sys.executable, "-m", "pytest", str(kit_root() / "grader"), "--impl",
                               str(solution_module()), "--results", str(results), "-q", "-p", "no:cacheprovider",
                               "-p", "no:nbval"],
                              capture_output=True, text=True, cwd=tmp_path, env=portable_env(), timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        data = json.loads(results.read_text(encoding="utf-8"))
        assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0
