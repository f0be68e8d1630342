"""One worker per run directory: the run directory's lock (``RUN_DIR/worker.lock``).

A runner takes :class:`RunDirLock` before it writes anything in the run directory and hands the
descriptor to its worker, which holds it for its whole life; a second run waits a little, then refuses
with :class:`RunDirBusyError` naming the holder. The lock is ``fcntl.flock`` where the platform has it
(the kernel drops it with its last descriptor, so a SIGKILLed holder never leaves it stale) and an
exclusive-create pid file elsewhere: :mod:`batchlab.host` says which (:func:`batchlab.host.flock_available`)
and whether a holder still runs (:func:`batchlab.host.pid_alive`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .errors import KitError
from .host import flock_available, pid_alive

#: The lock file in a run directory.
LOCK_NAME = "worker.lock"
#: The inherited descriptor of a lock the parent already holds for this worker.
LOCK_FD_ENV = "BATCHLAB_RUN_LOCK_FD"
#: How long a second run waits for a busy run directory before it refuses (seconds).
DEFAULT_LOCK_WAIT_S = 3.0


class RunDirBusyError(KitError):
    """Another worker (or the command that started it) holds the run directory."""

    default_code = "run_dir_busy"


class RunDirLock:
    """An exclusive lock on ``RUN_DIR/worker.lock`` for the life of the process that holds it.

    With ``flock`` the kernel releases the lock when the last descriptor of it is
    closed, so a SIGKILLed holder never leaves a stale lock. A runner takes the
    lock *before* it writes anything in the run directory and hands the descriptor
    to its worker (``pass_fds`` and :data:`LOCK_FD_ENV`), so the lock covers the
    runner's preparation and the worker's whole life, with no gap between them.
    The file holds one JSON line naming the holder (pid, role, since when), which
    the refusal quotes.
    """

    def __init__(self, run_dir: str | Path, *, role: str = "runner") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.role = role
        self.fd: int | None = None
        self.mechanism = "flock" if flock_available() else "pidfile"

    # -- taking it ---------------------------------------------------------------------

    def acquire(self, wait_s: float = DEFAULT_LOCK_WAIT_S, *, poll_s: float = 0.05) -> RunDirLock:
        """Take the lock, waiting up to ``wait_s``; else :class:`RunDirBusyError` (nothing written)."""
        deadline = time.monotonic() + max(wait_s, 0.0)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            if self._try_take():
                self._write_holder()
                return self
            if time.monotonic() >= deadline:
                raise self.busy_error(wait_s)
            time.sleep(poll_s)

    def _try_take(self) -> bool:
        if self.mechanism == "flock":
            import fcntl

            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self.fd = fd
            return True
        try:  # pid file: exclusive creation is the lock; a holder whose process is gone is stale
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            holder = read_holder(self.path)
            if holder.get("pid") and not pid_alive(int(holder["pid"])):
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            return False
        self.fd = fd
        return True

    @classmethod
    def adopt(cls, run_dir: str | Path, fd: int, *, role: str = "worker") -> RunDirLock:
        """Take over a lock held through an inherited descriptor (the worker's side of the hand-over)."""
        lock = cls(run_dir, role=role)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock.path))
        except OSError:
            same = False
        if not same:
            raise KitError(f"descriptor {fd} is not the lock of {lock.run_dir}", code="lock_mismatch",
                           details={"fd": fd, "lock": str(lock.path)},
                           hints=["Start workers through the runner (`batchlab run`), not by hand."])
        if lock.mechanism == "flock":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: already ours, cannot block
        lock.fd = fd
        if lock.mechanism == "flock":  # a pid file keeps naming the runner: it outlives each worker
            lock._write_holder()
        return lock

    # -- the holder's name ------------------------------------------------------------

    def _write_holder(self) -> None:
        assert self.fd is not None
        line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "role": self.role, "since": time.time(),
                           "mechanism": self.mechanism}) + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, line.encode(), 0)

    def busy_error(self, wait_s: float) -> RunDirBusyError:
        holder = read_holder(self.path)
        since = holder.get("since")
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float))
                else "an unknown time")
        pid = holder.get("pid", "unknown")
        return RunDirBusyError(
            f"{self.run_dir} is busy: {holder.get('role', 'a process')} pid {pid} has held it since {when}; "
            f"waited {wait_s:g} s",
            details={"run_dir": str(self.run_dir), "holder_pid": pid, "holder_role": holder.get("role"),
                     "since": when, "held_for_s": round(time.time() - since, 1) if isinstance(since, (int, float))
                     else None, "waited_s": wait_s, "lock": str(self.path)},
            hints=[f"Wait for it to finish, or stop it (Ctrl-C in its terminal, or `kill {pid}`): a worker stops "
                   "cleanly and the next run resumes where it stopped.",
                   "The lock dies with its process: a killed run never leaves it stale.",
                   "Or use another --run-dir (a new batch state)."])

    # -- handing it on and letting go ------------------------------------------------

    def child_env(self) -> dict[str, str]:
        return {LOCK_FD_ENV: str(self.fd)} if self.fd is not None else {}

    def release(self) -> None:
        """Close our descriptor. (Never ``LOCK_UN``: a worker sharing the lock keeps it until it exits.)"""
        if self.fd is None:
            return
        if self.mechanism == "pidfile" and read_holder(self.path).get("pid") == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: str | Path) -> dict[str, Any]:
    """Who holds (or last held) a run directory's lock, as its lock file says ({} if unknown)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_is_held(run_dir: str | Path) -> bool:
    """True if some process holds the run directory's lock now (a probe: takes and drops it at once)."""
    lock = RunDirLock(run_dir, role="probe")
    if not lock.path.exists():
        return False
    if lock.mechanism == "pidfile":
        pid = read_holder(lock.path).get("pid")
        if not pid:
            return False
        return pid_alive(int(pid))
    import fcntl

    fd = os.open(lock.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock
    return False
