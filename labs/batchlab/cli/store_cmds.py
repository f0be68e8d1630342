"""``batchlab metrics --store URL --batch-id ID``: the command line of a batch that lives in PostgreSQL.

:func:`cmd_worker_store` and :func:`run_store` are the ``worker --store`` and ``run --store --workers N`` sides,
for those verbs (the run-directory fleet's) to call when ``--store`` is given.

Kept apart from :mod:`batchlab.cli.commands` so that psycopg (the ``postgres`` extra) is imported only
when a ``--store`` is given: ``batchlab --help`` and the lesson's commands never load it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EXIT_FAILED, EXIT_OK, KitError, UsageError, strict_json
from ..runspec import RunSpec


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--store URL --batch-id ID``: read the batch from a PostgreSQL store instead of a run directory."""
    p.add_argument("--store", default=None, metavar="URL",
                   help="a PostgreSQL store (postgresql://...) instead of a run directory; needs --batch-id")
    p.add_argument("--batch-id", default=None, help="with --store: the batch to read")
    p.add_argument("--store-retry-s", type=float, default=10.0,
                   help="with --store: how long to retry an unreachable server before giving up (default 10)")


def check_url(url: str) -> None:
    """A ``--store`` that is not a PostgreSQL URL is a usage error, before psycopg reads it."""
    from ..pgstore import is_store_url

    if not is_store_url(url):
        raise UsageError(f"{url!r} is not a PostgreSQL URL", code="usage_error", details={"store": url},
                         hints=["--store postgresql://user@host:port/database"])


def _unreadable(exc: Exception, batch_id: str) -> KitError:
    """The unified error for a store the server refused or never answered for."""
    return KitError(f"the store cannot be read: {type(exc).__name__}: {exc}".strip(), code="store_unreachable",
                    details={"batch_id": batch_id},
                    hints=["Is the server up and the URL right? `psql URL -c 'select 1'` tells."])


def _check_store(args: argparse.Namespace) -> None:
    check_url(args.store)
    if not args.batch_id:
        raise UsageError("--store needs --batch-id", code="usage_error", details={"store": args.store},
                         hints=["One store holds many batches: name the one to read."])


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise UsageError("--store needs psycopg, which is not installed", code="missing_dependency",
                         details={"package": "psycopg"},
                         hints=["pip install -e '.[postgres]' (psycopg 3 and its libpq)"]) from None


def cmd_metrics_store(args: argparse.Namespace) -> int:
    """The metrics of one batch of a PostgreSQL store, the same keys as for a run directory."""
    _check_store(args)
    if args.run_dir is not None:
        raise UsageError("give a run directory or --store, not both", code="usage_error",
                         details={"run_dir": str(args.run_dir), "store": args.store})
    _import_psycopg()
    import psycopg

    from ..metrics import format_table
    from ..pgmetrics import metrics_for_store

    try:
        metrics = metrics_for_store(args.store, args.batch_id, retry_s=args.store_retry_s)
    except psycopg.Error as exc:
        raise _unreadable(exc, args.batch_id) from None
    print(strict_json(metrics.to_dict(), ensure_ascii=False, indent=2, default=str) if args.json
          else format_table(metrics))
    return EXIT_OK


def cmd_worker_store(args: argparse.Namespace) -> int:
    """``worker --store URL --batch-id ID [--impl PATH] [--owner W] [--lease-s L] [--folder DIR]``: join a batch.

    For the ``worker`` verb to call when ``--store`` is given (:func:`batchlab.pgworker.work`); ``--impl``
    defaults to the reference where the kit has it, as ``run`` does.
    """
    import os
    import tempfile

    from ..paths import solution_module

    _check_store(args)
    _import_psycopg()
    from ..pgworker import DEFAULT_LEASE_S, work

    impl = Path(getattr(args, "impl", None) or solution_module())
    owner = getattr(args, "owner", None) or f"{os.uname().nodename}-{os.getpid()}"
    folder = getattr(args, "folder", None) or Path(tempfile.mkdtemp(prefix=f"batchlab-{args.batch_id}-"))
    return work(args.store, args.batch_id, impl, owner=owner, folder=Path(folder),
                lease_s=getattr(args, "lease_s", None) or DEFAULT_LEASE_S)


def run_store(spec: RunSpec, *, url: str, workers: int, shards: int, lease_s: float, folder: Path) -> int:
    """``run --store URL --workers N``, given the run's spec: publish, run N local workers, print their exits and the
    metric table; 0 when every worker ended cleanly (for the ``run`` verb to call when ``--store`` is given)."""
    check_url(url)
    _import_psycopg()
    import psycopg

    from ..metrics import format_table
    from ..pgfleet import run_fleet
    from ..pgmetrics import metrics_for_store

    try:
        exits = run_fleet(url, spec, workers=workers, shards=shards, folder=folder, lease_s=lease_s)
    except psycopg.Error as exc:
        raise _unreadable(exc, spec.batch_id) from None
    print("\n".join(f"  {owner}: exit {code}" for owner, code in sorted(exits.items())))
    print(format_table(metrics_for_store(url, spec.batch_id)))
    return EXIT_OK if all(code == 0 for code in exits.values()) else EXIT_FAILED
