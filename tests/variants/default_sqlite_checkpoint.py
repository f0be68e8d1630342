"""A correct checkpoint in the plainest SQLite style: ``sqlite3.connect(path)`` with its defaults.

Rollback journal and ``synchronous=FULL``: every transition is a committed
transaction with fsyncs, about 1-5 ms each, so filling a large checkpoint takes
long; but a transition costs the same with 100 entries as with thousands. The
hot-spot check must pass it (it measures growth, not speed), within its time
budget. Graded on the checkpoint step only: slow commits would make its whole run
slow without telling anything new.
"""

REPLACEMENTS = [
    ('''        self._conn = sqlite3.connect(str(self.path), isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
''', '''        self._conn = sqlite3.connect(str(self.path), isolation_level=None)
'''),
]
GRADER_ARGS = ["--step", "checkpoint"]
