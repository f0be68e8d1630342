"""A real, throwaway PostgreSQL server on this machine: Debian's binaries driven by ``pg_ctl``, never a mock.

Used by the kit's tests (``tests/pgserver.py`` wraps it in pytest fixtures) and by notebook 08, which starts one
to show ``SELECT ... FOR UPDATE SKIP LOCKED`` claims on a real server and skips that section, saying why, where
the binaries are absent. One server: ``initdb`` into a fresh folder under the system's temporary folder, started
on a free loopback port (its unix socket in the same folder), stopped with ``pg_ctl stop -m immediate`` and
removed at the end. Why not ``pytest-postgresql``: README, Design decisions (the root case and the restart test
need ``pg_ctl`` in our hands anyway).

``initdb`` refuses to run as root, and CI (and a notebook in a root container) runs as root: then every server
command runs as an unprivileged user (``postgres`` where Debian's package created it, ``nobody`` otherwise)
through ``runuser``, with the folder chowned to that user. The folder is made with ``tempfile.mkdtemp`` in
``/tmp`` rather than under pytest's ``tmp_path`` because pytest's base folder is ``0700`` root's, which that user
could not enter. Standard library only: importing this module costs nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Where Debian installs the server binaries, one folder per major version (``/usr/local/bin/pg_ctl``
#: may be anything: only these folders, or ``BATCHLAB_PG_BIN``, are trusted).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
BIN_ENV = "BATCHLAB_PG_BIN"


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: ``$BATCHLAB_PG_BIN``, else Debian's newest."""
    wanted = ("initdb", "pg_ctl", "postgres")
    env = os.environ.get(BIN_ENV)
    candidates = [Path(env)] if env else sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_major, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in wanted):
            return folder
    return None


def _major(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


#: The same reasons for the notebook's Chinese prose (notebook 08 prints one and goes on without the section).
REASONS_ZH = {
    "platform": "只在 Linux 上查找 PostgreSQL 的服务器程序（或由 $BATCHLAB_PG_BIN 指定）",
    "binaries": "这台机器没有安装 PostgreSQL 的服务器程序（initdb、pg_ctl、postgres）：`apt-get install postgresql`",
    "psycopg": "没有安装 PostgreSQL 的 Python 驱动 psycopg：`pip install -e '.[postgres]'`",
    "user": "以 root 运行，但没有可以运行 PostgreSQL 的普通用户（postgres 或 nobody）",
}


def missing_reason(*, chinese: bool = False) -> str | None:
    """Why a local server cannot be started and used here (None when it can): binaries, psycopg, a user.

    ``chinese=True`` gives the reason as notebook 08 prints it (:data:`REASONS_ZH`).
    """
    cause, text = _missing()
    if cause is None:
        return None
    return REASONS_ZH[cause] if chinese else text


def _missing() -> tuple[str | None, str]:
    if sys.platform != "linux" and os.environ.get(BIN_ENV) is None:
        return "platform", f"PostgreSQL's server binaries are looked for on Linux only (or in ${BIN_ENV})"
    if find_bindir() is None:
        return "binaries", (f"PostgreSQL's server binaries are not installed (looked in {DEBIAN_PG_ROOT}/*/bin and "
                            f"${BIN_ENV}): `apt-get install postgresql` (.ci/run does it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg", "psycopg is not installed: `pip install -e '.[postgres]'`"
    try:
        server_user()
    except RuntimeError as exc:
        return "user", str(exc)
    return None, ""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_user() -> str | None:
    """The unprivileged user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither `postgres` nor `nobody` exists to run PostgreSQL as")


@dataclass
class PgServer:
    """A throwaway server: its URL, and ``start``/``stop``/``restart``/``close`` for whoever needs them."""

    bindir: Path
    folder: Path
    port: int
    user: str | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}{proc.stdout}\n{tail}")

    def init(self) -> None:
        # trust on loopback: a throwaway server reachable only from this machine, for its owner's session.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", opts, "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (``-m immediate``: nothing of a throwaway server is worth a clean shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self) -> None:
        """Crash-stop and start again on the same port: the clients' connections break, the data stays."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop it if it runs and remove its folder (idempotent: also registered at exit by :func:`start_local`)."""
        if self.folder.exists():
            with contextlib.suppress(Exception):
                self.stop()
            shutil.rmtree(self.folder, ignore_errors=True)


def start_local() -> PgServer:
    """Init and start a server in a fresh folder; removed by ``close()`` or, at the latest, when Python exits.

    Call :func:`missing_reason` first: this assumes the binaries are there.
    """
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(missing_reason() or "PostgreSQL's server binaries are not installed")
    user = server_user()
    folder = Path(tempfile.mkdtemp(prefix="batchlab-pg-"))
    if user is not None:
        shutil.chown(folder, user=user)
    server = PgServer(bindir=bindir, folder=folder, port=free_port(), user=user)
    atexit.register(server.close)  # a kernel or a test session that ends takes no server with it
    try:
        server.init()
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """A started server in a fresh folder; stopped and removed on exit (whatever happened)."""
    server = start_local()
    try:
        yield server
    finally:
        server.close()
