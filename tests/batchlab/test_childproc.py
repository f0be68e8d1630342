"""batchlab.childproc: a child the kit may kill gets its limits and its own session, dies with its group,
and, with limits set, dies with its parent; and the environment is copied safely for it.

(``batchlab.host`` re-exports these names; the platform itself is ``tests/batchlab/test_host.py``'s.)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from batchlab.childproc import FORCE_PORTABLE_ENV, child_popen_kwargs, kill_group
from batchlab.runner import Limits

LINUX = sys.platform.startswith("linux")
LIMITS = Limits(cpu_s=60, memory_bytes=2 * 1024**3, file_bytes=64 * 1024**2)
#: A child that reports its own limits and session.
REPORT_LIMITS = textwrap.dedent("""
    import json, os, resource
    print(json.dumps({"cpu": resource.getrlimit(resource.RLIMIT_CPU)[0],
                      "as": resource.getrlimit(resource.RLIMIT_AS)[0],
                      "fsize": resource.getrlimit(resource.RLIMIT_FSIZE)[0],
                      "own_session": os.getsid(0) == os.getpid()}))
""")


def limits_of_child(**kwargs: Any) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, "-c", REPORT_LIMITS], stdout=subprocess.PIPE, text=True, **kwargs)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return json.loads(out)


@pytest.mark.student_env  # a hard limit is lowered to the user's own only when not root (childproc.rlimit_pairs)
class TestChildProcesses:
    @pytest.mark.skipif(not LINUX, reason="the address-space limit is set on Linux only")
    def test_on_linux_a_child_gets_every_limit_and_its_own_session(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(FORCE_PORTABLE_ENV, raising=False)
        seen = limits_of_child(**child_popen_kwargs(LIMITS))
        assert seen == {"cpu": 60, "as": 2 * 1024**3, "fsize": 64 * 1024**2, "own_session": True}

    def test_with_the_fallbacks_forced_a_child_gets_no_address_space_limit(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(FORCE_PORTABLE_ENV, "1")
        seen = limits_of_child(**child_popen_kwargs(LIMITS))
        assert seen == {"cpu": 60, "as": resource.getrlimit(resource.RLIMIT_AS)[0], "fsize": 64 * 1024**2,
                        "own_session": True}

    def test_no_limits_means_no_preexec_function(self) -> None:
        assert child_popen_kwargs(None) == {"start_new_session": True, "preexec_fn": None}

    @pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the grandchild's state from /proc")
    def test_kill_group_takes_the_childs_own_children_with_it(self, tmp_path: Path) -> None:
        pid_file = tmp_path / "grandchild.pid"
        script = textwrap.dedent(f"""
            import subprocess, sys, time
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            open({str(pid_file)!r}, "w").write(str(p.pid))
            time.sleep(120)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], **child_popen_kwargs(None))
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):  # wait for the grandchild, not for a delay
            assert time.monotonic() < deadline and proc.poll() is None, "the child never started its own child"
            time.sleep(0.02)
        grandchild = int(pid_file.read_text())
        kill_group(proc)
        assert proc.wait(timeout=30) == -9
        deadline = time.monotonic() + 30
        while _alive(grandchild):
            assert time.monotonic() < deadline, f"grandchild {grandchild} survived the group kill"
            time.sleep(0.02)

    def test_kill_group_of_a_child_already_gone_is_fine(self) -> None:
        proc = subprocess.Popen([sys.executable, "-c", "pass"], **child_popen_kwargs(None))
        proc.wait(timeout=60)
        kill_group(proc)  # no ProcessLookupError
        assert proc.returncode == 0


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not reaped by its new parent, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.student_env
class TestLimitedChildrenDieWithTheirParent:
    @pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
    def test_a_limited_child_of_a_killed_grader_dies_with_it(self, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """The grader's probes get the kernel's promise through the preexec function that sets their limits."""
        monkeypatch.delenv(FORCE_PORTABLE_ENV, raising=False)
        script = textwrap.dedent("""
            import subprocess, sys, time
            from batchlab.childproc import child_popen_kwargs
            from batchlab.runner import Limits
            p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 **child_popen_kwargs(Limits(cpu_s=60)))
            print(p.pid, flush=True)
            time.sleep(600)
        """)
        parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        child = 0
        try:
            assert parent.stdout is not None
            child = int(parent.stdout.readline())
            parent.kill()
            parent.communicate(timeout=60)
            deadline = time.monotonic() + 60
            while _alive(child):
                assert time.monotonic() < deadline, f"probe {child} outlived its killed parent"
                time.sleep(0.02)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.communicate()
            if child and _alive(child):
                os.kill(child, 9)


class TestEnvironSnapshot:
    def test_a_key_that_vanishes_while_it_is_copied_does_not_break_the_copy(self, monkeypatch: Any) -> None:
        """pytest removes PYTEST_CURRENT_TEST in its main thread while grader threads start children."""
        import collections

        from batchlab import childproc

        class Vanishing(collections.UserDict):  # type: ignore[type-arg]
            reads = 0

            def __getitem__(self, key: str) -> str:
                Vanishing.reads += 1
                if key == "GONE" and Vanishing.reads < 3:
                    raise KeyError(key)  # listed, then removed by another thread before it is read
                return str(super().__getitem__(key))

        fake = Vanishing({"HOME": "/home/x", "GONE": "1"})
        monkeypatch.setattr(childproc.os, "environ", fake)
        assert childproc.environ_snapshot()["HOME"] == "/home/x"
