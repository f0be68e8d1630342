"""The tests' throwaway PostgreSQL server (tests/pgserver.py): real, unprivileged, and never silently skipped in CI."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from pgserver import PgServer, missing_reason, skip_or_fail

#: As root the server runs through runuser, else as the user itself; without the `postgres` extra it skips.
pytestmark = pytest.mark.student_env


def test_the_server_answers_sql(pg_url: str) -> None:
    """The session's server is a real PostgreSQL that runs a query over TCP on loopback."""
    import psycopg

    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int, inet_server_addr()::text").fetchone()
    assert row is not None and row[0] >= 130000 and row[1].startswith("127.0.0.1")


def test_the_server_never_runs_as_root(pg: PgServer) -> None:
    """Its data folder belongs to an unprivileged user (as root, initdb ran through runuser)."""
    owner = pwd.getpwuid(os.stat(pg.data).st_uid).pw_name
    assert owner != "root" and (os.geteuid() == 0 or owner == pwd.getpwuid(os.geteuid()).pw_name)


def test_each_test_database_starts_empty(pg_db: str) -> None:
    """``pg_db`` is a fresh database of its own, with no table in it."""
    import psycopg

    with psycopg.connect(pg_db) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert row == (0,) and pg_db.rsplit("/", 1)[1] != "postgres"


def test_missing_binaries_skip_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the server binaries the reason names them, and the tests skip with it."""
    monkeypatch.setenv("BATCHLAB_PG_BIN", str(tmp_path))
    monkeypatch.delenv("BATCHLAB_REQUIRE_POSTGRES", raising=False)
    reason = missing_reason()
    assert reason is not None and "apt-get install postgresql" in reason
    with pytest.raises(pytest.skip.Exception, match="binaries"):
        skip_or_fail(reason)


def test_ci_turns_the_skip_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``BATCHLAB_REQUIRE_POSTGRES=1`` a missing server fails the test instead of skipping it."""
    monkeypatch.setenv("BATCHLAB_REQUIRE_POSTGRES", "1")
    with pytest.raises(pytest.fail.Exception, match="BATCHLAB_REQUIRE_POSTGRES=1"):
        skip_or_fail("PostgreSQL's server binaries are not installed")
