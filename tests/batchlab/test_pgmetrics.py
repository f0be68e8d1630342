"""The metrics of a batch in PostgreSQL: the same fold and the same figures as for the run directory it came from."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pgserver import need_psycopg

need_psycopg()

from batchlab.batchstream import open_batch
from batchlab.errors import KitError
from batchlab.faults import CRASH_AFTER_COMMIT, CrashPlan, FaultPlan
from batchlab.ledger import iter_events
from batchlab.metrics import metrics_for_run
from batchlab.pgmetrics import metrics_for_store
from batchlab.pgstore import PgConnection, import_events, load_documents
from batchlab.rundir import RunDir
from batchlab.runner import read_spec


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the reference on 30 documents with 3 % faults, killed after its 8th commit and resumed."""
    from batchlab.examples import make_documents, write_input
    from batchlab.paths import solution_module
    from batchlab.runner import RunSpec, run_passes

    if not solution_module().exists():
        pytest.skip("needs the reference solution, which a student distribution leaves out")
    base = tmp_path_factory.mktemp("crashed")
    source = write_input(base / "input.json", make_documents(30, seed=4, min_bytes=100, max_bytes=600))
    run_passes(RunSpec(impl=solution_module(), input=source, run_dir=base / "run",
                       plan=FaultPlan(seed=4, transient_rate=0.03)),
               [CrashPlan(CRASH_AFTER_COMMIT, 8)])
    return base / "run"


def copy_into(db: PgConnection, batch_id: str, run: Path) -> None:
    """The run directory's input, ledger and sink, copied into the store's tables for ``batch_id``."""
    load_documents(db, batch_id, open_batch(read_spec(run).input), chunk=7)
    import_events(db, batch_id, iter_events(RunDir(run).ledger))
    with sqlite3.connect(RunDir(run).sink) as sink:
        outputs = sink.execute("SELECT key, doc_id, ident, mode, chunks, vectors, committed_at, writes FROM outputs")
        puts = sink.execute("SELECT key, doc_id, ident, mode, pass, t, upgrade FROM puts ORDER BY seq").fetchall()

        def write(c: object) -> None:
            with c.cursor() as cur:  # type: ignore[attr-defined]
                cur.executemany("INSERT INTO outputs (batch_id, key, doc_id, ident, mode, chunks, vectors, "
                                "committed_at, writes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                                [(batch_id, *row) for row in outputs])
                cur.executemany("INSERT INTO puts (batch_id, key, doc_id, ident, mode, pass, t, upgrade) "
                                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                                [(batch_id, *row[:6], bool(row[6])) for row in puts])

        db.transact(write)


def test_the_figures_from_the_store_are_the_run_directorys(pg_db: str, crashed_run: Path) -> None:
    """Every key and value of ``metrics --json`` (per pass included) is the same from PostgreSQL as from the files."""
    db = PgConnection(pg_db)
    copy_into(db, "b", crashed_run)
    copy_into(db, "other", crashed_run)  # another batch in the same store changes nothing
    from_files = metrics_for_run(crashed_run).to_dict()
    from_store = metrics_for_store(pg_db, "b").to_dict()
    assert from_files["passes"] == 2 and from_files["completed"] == from_files["unique"] > 0
    assert from_store == from_files


def test_the_fold_spills_to_disk_with_the_same_figures(pg_db: str, crashed_run: Path) -> None:
    """Past the spill threshold the fold's state moves to a scratch file; the figures from the store do not change."""
    copy_into(PgConnection(pg_db), "b", crashed_run)
    assert metrics_for_store(pg_db, "b", spill_keys=4).to_dict() == metrics_for_store(pg_db, "b").to_dict()


def test_an_unknown_batch_is_a_kit_error(pg_db: str) -> None:
    """A batch id the store does not hold gives ``batch_not_found``, not a traceback."""
    with pytest.raises(KitError) as info:
        metrics_for_store(pg_db, "nope")
    assert info.value.code == "batch_not_found"


class TestTheCommand:
    def test_metrics_store_prints_the_run_directorys_json(self, pg_db: str, crashed_run: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
        """``batchlab metrics --store URL --batch-id ID --json`` prints what ``batchlab metrics RUN --json`` prints."""
        from batchlab.cli import main

        copy_into(PgConnection(pg_db), "b", crashed_run)
        assert main(["metrics", str(crashed_run), "--json"]) == 0
        from_files = capsys.readouterr().out
        assert main(["metrics", "--store", pg_db, "--batch-id", "b", "--json"]) == 0
        assert capsys.readouterr().out == from_files
        assert main(["metrics", "--store", pg_db, "--batch-id", "b"]) == 0
        assert "completion" in capsys.readouterr().out

    @pytest.mark.parametrize(("argv", "code"), [
        (["--store", "postgresql://127.0.0.1:1/x"], "usage_error"),  # no --batch-id
        (["--store", "runs/x", "--batch-id", "b"], "usage_error"),  # not a URL
        (["runs/x", "--store", "postgresql://127.0.0.1:1/x", "--batch-id", "b"], "usage_error"),  # both
        ([], "usage_error"),  # neither
        (["--store", "postgresql://postgres@127.0.0.1:1/x", "--batch-id", "b", "--store-retry-s", "0"],
         "store_unreachable"),
    ])
    def test_a_wrong_or_unreachable_store_is_the_unified_error(self, argv: list[str], code: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
        """Bad --store arguments and a server that does not answer exit 2 with the unified error, no traceback."""
        import json

        from batchlab.cli import main

        assert main(["metrics", *argv]) == 2
        assert json.loads(capsys.readouterr().out)["error"]["code"] == code

    def test_an_unknown_batch_exits_2_with_batch_not_found(self, pg_db: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A store without the batch: ``batch_not_found`` printed, exit 2."""
        import json

        from batchlab.cli import main

        assert main(["metrics", "--store", pg_db, "--batch-id", "nope"]) == 2
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "batch_not_found"
