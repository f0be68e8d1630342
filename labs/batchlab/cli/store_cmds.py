"""``batchlab metrics --store URL --batch-id ID``: the command line of a batch that lives in PostgreSQL.

Kept apart from :mod:`batchlab.cli.commands` so that psycopg (the ``postgres`` extra) is imported only
when a ``--store`` is given: ``batchlab --help`` and the lesson's commands never load it.
"""

from __future__ import annotations

import argparse

from ..errors import EXIT_OK, KitError, UsageError, strict_json


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--store URL --batch-id ID``: read the batch from a PostgreSQL store instead of a run directory."""
    p.add_argument("--store", default=None, metavar="URL",
                   help="a PostgreSQL store (postgresql://...) instead of a run directory; needs --batch-id")
    p.add_argument("--batch-id", default=None, help="with --store: the batch to read")
    p.add_argument("--store-retry-s", type=float, default=10.0,
                   help="with --store: how long to retry an unreachable server before giving up (default 10)")


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise UsageError("--store needs psycopg, which is not installed", code="missing_dependency",
                         details={"package": "psycopg"},
                         hints=["pip install -e '.[postgres]' (psycopg 3 and its libpq)"]) from None


def cmd_metrics_store(args: argparse.Namespace) -> int:
    """The metrics of one batch of a PostgreSQL store, the same keys as for a run directory."""
    from ..pgstore import is_store_url

    if not is_store_url(args.store):
        raise UsageError(f"{args.store!r} is not a PostgreSQL URL", code="usage_error", details={"store": args.store},
                         hints=["--store postgresql://user@host:port/database"])
    if not args.batch_id:
        raise UsageError("--store needs --batch-id", code="usage_error", details={"store": args.store},
                         hints=["One store holds many batches: name the one to read."])
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
        raise KitError(f"the store cannot be read: {type(exc).__name__}: {exc}".strip(), code="store_unreachable",
                       details={"batch_id": args.batch_id},
                       hints=["Is the server up and the URL right? `psql URL -c 'select 1'` tells."]) from None
    print(strict_json(metrics.to_dict(), ensure_ascii=False, indent=2, default=str) if args.json
          else format_table(metrics))
    return EXIT_OK
