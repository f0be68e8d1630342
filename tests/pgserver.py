"""The tests' throwaway PostgreSQL server: pytest fixtures over :mod:`batchlab.teach.pglocal` (never a mock).

The server itself (Debian's binaries driven by ``pg_ctl``, run as an unprivileged user when we are root, in a
``mkdtemp`` folder under ``/tmp``) is :mod:`batchlab.teach.pglocal`, shared with notebook 08, which starts one
too. Here: one server per test session, a fresh database per test, and the skip policy.

The tests that need it skip, saying why, only when the binaries (or psycopg, the ``postgres`` extra)
are missing; ``BATCHLAB_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from batchlab.teach.pglocal import DEBIAN_PG_ROOT, PgServer, find_bindir, missing_reason, pg_server

__all__ = ["DEBIAN_PG_ROOT", "PgServer", "find_bindir", "missing_reason", "need_psycopg", "pg", "pg_db", "pg_server",
           "pg_url", "skip_or_fail"]

REQUIRE_ENV = "BATCHLAB_REQUIRE_POSTGRES"


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
