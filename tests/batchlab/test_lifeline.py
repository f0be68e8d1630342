"""batchlab.lifeline: a worker dies with the parent that started it (PR_SET_PDEATHSIG, or a watched pipe)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from batchlab.host import FORCE_PORTABLE_ENV, capabilities
from batchlab.lifeline import PARENT_LINK_ENV, hold_parent_link, parent_link

LINUX = sys.platform.startswith("linux")


class TestWorkerDiesWithItsParent:
    @pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
    def test_on_linux_the_main_thread_uses_pdeathsig(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(FORCE_PORTABLE_ENV, raising=False)
        link = parent_link()
        assert link.mechanism == "pdeathsig" and link.env == {PARENT_LINK_ENV: f"pdeathsig:{os.getpid()}"}
        assert capabilities().parent_death == "pdeathsig"

    def test_with_the_fallbacks_forced_it_is_a_pipe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(FORCE_PORTABLE_ENV, "1")
        link = parent_link()
        try:
            assert link.mechanism == "pipe" and len(link.pass_fds) == 1
            assert link.env == {PARENT_LINK_ENV: f"pipe:{link.pass_fds[0]}"}
        finally:
            link.attach(None)
        assert link.pass_fds == ()

    def test_from_another_thread_it_is_a_pipe(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """PDEATHSIG fires when the forking *thread* exits: a worker started from a helper thread needs the pipe."""
        monkeypatch.delenv(FORCE_PORTABLE_ENV, raising=False)
        links: list[Any] = []
        thread = threading.Thread(target=lambda: links.append(parent_link()))
        thread.start()
        thread.join()
        links[0].attach(None)
        assert links[0].mechanism == "pipe"

    def test_the_watched_pipe_kills_the_child_when_the_parent_end_closes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(FORCE_PORTABLE_ENV, "1")
        link = parent_link()
        code = "import time; from batchlab.lifeline import hold_parent_link; print(hold_parent_link(), flush=True); " \
               "time.sleep(600)"
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **link.env}, pass_fds=link.pass_fds,
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "pipe"
            link.attach(None)  # what the kernel does to a dead parent's descriptors
            assert proc.wait(timeout=60) == -9
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    def test_a_child_started_by_hand_has_no_link(self) -> None:
        assert hold_parent_link({}) == "none"
