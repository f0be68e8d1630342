"""A real, throwaway PostgreSQL server for the tests (Debian's binaries driven by ``pg_ctl``; never a mock).

One server per test session: ``initdb`` into a fresh folder under the system's temporary folder, started
on a free loopback port (its unix socket in the same folder), stopped with ``pg_ctl stop -m immediate``
and removed at the end. Why not ``pytest-postgresql``: README, Design decisions (the root case and the
restart test need ``pg_ctl`` in our hands anyway).

``initdb`` refuses to run as root, and CI runs as root: then every server command runs as an
unprivileged user (``postgres`` where Debian's package created it, ``nobody`` otherwise) through
``runuser``, with the folder chowned to that user. The folder is made with ``tempfile.mkdtemp`` in
``/tmp`` rather than under pytest's ``tmp_path`` because pytest's base folder is ``0700`` root's,
which that user could not enter.

The tests that need it skip, saying why, only when the binaries (or psycopg, the ``postgres`` extra)
are missing; ``BATCHLAB_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where Debian installs the server binaries, one folder per major version (``/usr/local/bin/pg_ctl``
#: may be anything: only these folders, or ``BATCHLAB_PG_BIN``, are trusted).
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
REQUIRE_ENV = "BATCHLAB_REQUIRE_POSTGRES"


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: ``$BATCHLAB_PG_BIN``, else Debian's newest."""
    wanted = ("initdb", "pg_ctl", "postgres")
    env = os.environ.get("BATCHLAB_PG_BIN")
    candidates = [Path(env)] if env else sorted(DEBIAN_PG_ROOT.glob("*/bin"), key=_major, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in wanted):
            return folder
    return None


def _major(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def missing_reason() -> str | None:
    """Why a PostgreSQL test cannot run here (None when it can)."""
    if find_bindir() is None:
        return (f"PostgreSQL's server binaries are not installed (looked in {DEBIAN_PG_ROOT}/*/bin and "
                "$BATCHLAB_PG_BIN): `apt-get install postgresql` (.ci/run does it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: `pip install -e '.[postgres]'`"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; fail instead when ``BATCHLAB_REQUIRE_POSTGRES=1`` (CI must run these tests)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def need_psycopg() -> None:
    """At the top of a PostgreSQL test module, before it imports the store: skip the module (or fail it, in CI)
    where psycopg is not installed (the unprivileged CI leg installs the kit without the `postgres` extra)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed: `pip install -e '.[postgres]'`"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """The unprivileged user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither `postgres` nor `nobody` exists to run PostgreSQL as")


@dataclass
class PgServer:
    """A running throwaway server: its URL, and ``restart``/``stop`` for the tests that need them."""

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
            log = (self.folder / "server.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr}{proc.stdout}\n{tail}")

    def init(self) -> None:
        # trust on loopback: a throwaway server reachable only from this machine, for the session's length.
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


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """A started server in a fresh folder; stopped and removed on exit (whatever happened)."""
    bindir = find_bindir()
    assert bindir is not None
    user = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="batchlab-pg-"))
    if user is not None:
        shutil.chown(folder, user=user)
    server = PgServer(bindir=bindir, folder=folder, port=_free_port(), user=user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    """The session's PostgreSQL server (skips, saying why, where the binaries or psycopg are missing)."""
    reason = missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    with pg_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg: PgServer) -> str:
    """The URL of the session's PostgreSQL server (database ``postgres``, user ``postgres``, no password)."""
    return pg.url


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_db(pg: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session's server for one test (its URL); dropped after it."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg.url.rsplit("/", 1)[0] + f"/{name}"
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
