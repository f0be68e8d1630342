"""batchlab.teach.pglocal: the throwaway PostgreSQL server that the tests' fixtures and notebook 08 start.

The session's server (``pg``) already proves that it runs SQL and never as root (tests/test_pgserver.py); here
a server of its own is started and closed, because closing it is what a notebook's last cell does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from batchlab.teach import pglocal
from pgserver import skip_or_fail


def test_a_started_server_answers_and_close_stops_it_and_removes_its_folder() -> None:
    """start_local() gives a server that runs SQL; close() stops it and leaves no folder behind (twice is fine)."""
    reason = pglocal.missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    import psycopg

    server = pglocal.start_local()
    try:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
    finally:
        server.close()
    assert not server.folder.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=5)
    server.close()


def test_without_the_binaries_the_reason_is_given_in_english_and_in_chinese(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty $BATCHLAB_PG_BIN: the reason names the package to install, in both languages; nothing starts."""
    monkeypatch.setenv("BATCHLAB_PG_BIN", str(tmp_path))
    assert pglocal.find_bindir() is None
    assert "apt-get install postgresql" in (pglocal.missing_reason() or "")
    chinese = pglocal.missing_reason(chinese=True) or ""
    assert "没有安装" in chinese and "apt-get install postgresql" in chinese
    with pytest.raises(RuntimeError, match="apt-get install postgresql"):
        pglocal.start_local()
