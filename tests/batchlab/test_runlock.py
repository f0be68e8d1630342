"""batchlab.runlock: one worker (or runner) per run directory, with flock or a pid-file fallback.

Moved out of ``test_host.py`` with the lock itself (``host.py`` -> ``runlock.py``). The lock's
life across real processes (a second ``batchlab run`` on a busy directory, workers that outlive
a runner) is tested in ``test_lifetime.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batchlab.host import capabilities
from batchlab.runlock import LOCK_NAME, RunDirBusyError, RunDirLock, lock_is_held


class TestRunDirLock:
    def test_a_second_holder_waits_then_gets_the_unified_busy_error(self, tmp_path: Path) -> None:
        """A second taker waits its time, then gets ``run_dir_busy`` naming the holder; the lock is free after."""
        with RunDirLock(tmp_path / "run", role="first").acquire(0):
            t0 = time.monotonic()
            with pytest.raises(RunDirBusyError) as info:
                RunDirLock(tmp_path / "run").acquire(0.2)
            assert time.monotonic() - t0 >= 0.2
        error = info.value.to_dict()["error"]
        assert error["code"] == "run_dir_busy" and error["details"]["holder_pid"] == os.getpid()
        assert error["details"]["holder_role"] == "first"
        RunDirLock(tmp_path / "run").acquire(0).release()  # free again once released

    def test_the_pid_file_fallback_refuses_a_live_holder_and_takes_over_a_dead_one(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without flock: a live holder's pid file refuses, a dead holder's pid file is stale and taken over."""
        monkeypatch.setattr("batchlab.runlock.flock_available", lambda: False)
        first = RunDirLock(tmp_path / "run", role="first").acquire(0)
        assert first.mechanism == "pidfile" and lock_is_held(tmp_path / "run")
        with pytest.raises(RunDirBusyError):
            RunDirLock(tmp_path / "run").acquire(0.1)
        first.release()
        assert not (tmp_path / "run" / LOCK_NAME).exists()
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / "run" / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "role": "ghost"}))
        RunDirLock(tmp_path / "run").acquire(1.0).release()  # a holder whose process is gone is stale

    def test_the_capabilities_name_the_lock(self) -> None:
        """The host's capabilities (what the kit found on this machine) name the lock it uses: flock on Linux."""
        assert capabilities().run_dir_lock == "flock"
