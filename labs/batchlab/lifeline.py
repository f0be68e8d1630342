"""A worker dies with its parent: the link between a child the kit starts and the process that started it.

Killing ``batchlab run``, the dashboard's kernel, the service or the grader must never
leave a worker committing on its own (README "Design decisions": a batch stops when its
command stops). The parent prepares a :class:`ParentLink` before ``Popen``; the child's
first act (:func:`hold_parent_link`, in :mod:`batchlab.worker`) is to hold it: on Linux
``PR_SET_PDEATHSIG`` (the kernel SIGKILLs the child when the parent dies), elsewhere, or
from a thread that may exit first, a pipe whose end-of-file the child watches. The
platform facts it needs (``prctl`` through ctypes, whether it is usable here) are in
:mod:`batchlab.childproc`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from .childproc import PR_SET_PDEATHSIG, libc_prctl, pdeathsig_usable

#: How a child learns its link to the parent: ``pdeathsig:PID`` or ``pipe:FD`` (see :func:`hold_parent_link`).
PARENT_LINK_ENV = "BATCHLAB_PARENT_LINK"


@dataclass
class ParentLink:
    """The parent's side of "the worker dies with its parent" for one child.

    ``mechanism`` is ``pdeathsig`` (Linux: the kernel SIGKILLs the child when this
    process dies, whatever killed it) or ``pipe`` (portable: the child holds the
    read end of a pipe whose write end only this process holds; when this process
    dies the kernel closes it and the child, watching, sees end-of-file and kills
    itself). Give ``env`` and ``pass_fds`` to ``Popen``, then call :meth:`attach`.
    """

    mechanism: str
    env: dict[str, str] = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()
    _write_fd: int | None = None

    def attach(self, proc: subprocess.Popen[Any] | None) -> None:
        """After ``Popen``: close the child's end here; keep ours open as long as ``proc`` is referenced."""
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = ()
        if self._write_fd is not None:
            if proc is None:
                os.close(self._write_fd)
            else:
                weakref.finalize(proc, os.close, self._write_fd)
            self._write_fd = None


def parent_link(*, across_namespaces: bool = False) -> ParentLink:
    """Prepare the link of a child about to be started from this thread (see :class:`ParentLink`).

    ``across_namespaces``: the child starts inside a wrapper with a PID namespace of its own (bubblewrap), where
    it cannot check its parent's pid: the pipe is used, which works across.
    """
    if pdeathsig_usable() and not across_namespaces:
        return ParentLink("pdeathsig", env={PARENT_LINK_ENV: f"pdeathsig:{os.getpid()}"})
    read_fd, write_fd = os.pipe()
    return ParentLink("pipe", env={PARENT_LINK_ENV: f"pipe:{read_fd}"}, pass_fds=(read_fd,), _write_fd=write_fd)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hold_parent_link(environ: dict[str, str] | None = None) -> str:
    """In the child (the worker, first thing): die when the parent that started us dies.

    Returns the mechanism in force (``pdeathsig``, ``pipe`` or ``none`` when the
    child was started by hand, without a link).
    """
    value = (environ if environ is not None else os.environ).get(PARENT_LINK_ENV, "")
    kind, _, arg = value.partition(":")
    if kind == "pdeathsig" and libc_prctl() is not None:
        libc_prctl()(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != int(arg):  # the parent died before we asked: nobody will send the signal
            _die()
        return "pdeathsig"
    if kind == "pipe":
        fd = int(arg)

        def watch() -> None:
            while True:
                try:
                    if not os.read(fd, 1024):  # end of file: every write end is closed, the parent is gone
                        break
                except InterruptedError:
                    continue
                except OSError:
                    break
            _die()

        threading.Thread(target=watch, name="batchlab-parent-watch", daemon=True).start()
        return "pipe"
    return "none"
