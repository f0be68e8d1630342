"""``batchlab``: a thin command line over the kit's keyword-only functions.

Every verb calls a plain function that notebooks, tests and the dashboard call
too (otter-grader's ``cli.py`` shape). Bad input of any kind prints the unified
error structure ``{"error": {code, message, details, hints}}`` and exits 2,
before anything of an earlier run is touched.

``parser`` declares the verbs and their options (and :data:`EXTENSIONS`, the verbs the front-ends register),
``commands`` holds the verbs themselves; this module is the entry point, :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import EXIT_BAD_INPUT, KitError
from ..host import require_supported_platform
from .parser import EXTENSIONS, build_parser

__all__ = ["EXTENSIONS", "build_parser", "main"]


def _printable_streams() -> None:
    """Anything the kit prints (an echoed id with a lone surrogate...) comes out escaped, never as a crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush (which exits 120)
        return code
    except BrokenPipeError:
        return _reader_left()


def _main(argv: Sequence[str] | None) -> int:
    try:
        require_supported_platform()  # native Windows: the unified error, before anything runs
        _printable_streams()
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "wait", False) is None:
            from ..runlock import DEFAULT_LOCK_WAIT_S

            args.wait = DEFAULT_LOCK_WAIT_S
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KitError as exc:
        print(exc.to_json())
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _reader_left() -> int:
    """`batchlab check | head`: the reader closed the pipe, so there is nobody to tell; no traceback.

    Python's documented recipe: point stdout at /dev/null so that the flush at exit cannot raise again, and
    exit as a shell reports a command ended by SIGPIPE (128 + 13).
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141
