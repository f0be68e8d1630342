"""``batchlab serve``: the service on uvicorn, its URL printed, stopped cleanly by Ctrl-C or SIGTERM.

The socket is bound here, before uvicorn starts, so that ``--port 0`` (any free
port: what tests use) still prints the real URL. On Ctrl-C uvicorn stops taking
requests and runs the app's shutdown, which stops every running batch's worker
cleanly (:meth:`~.manager.BatchManager.shutdown`): each batch is left
``interrupted`` and resumes after the next start.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8015
DEFAULT_DATA = Path("runs/service")


def serve(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, data: Path = DEFAULT_DATA,
          impl: Path | None = None, max_running: int = 4) -> int:
    """Run the service until Ctrl-C or SIGTERM; returns the exit code."""
    import uvicorn

    from .app import create_app
    from .manager import BatchManager

    manager = BatchManager(data, impl=impl, max_running=max_running)
    app = create_app(manager)
    sock, family = listening_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(f"batchlab serve: http://{shown}:{bound}/  (API docs: http://{shown}:{bound}/docs; data: "
          f"{manager.store.root}; implementation: {manager.impl})", flush=True)
    print("Press Ctrl-C to stop: running batches stop cleanly and can be resumed after the next start.",
          file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3, lifespan="on")
    # uvicorn answers SIGINT even where it was ignored (a server started from a script's background job), then
    # raises it again under the handler it found: an ignored SIGINT made a clean Ctrl-C stop exit 0, not 130.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once its shutdown (and ours) is done
        print("batchlab serve: stopped by Ctrl-C; running batches are interrupted and resumable",
              file=sys.stderr, flush=True)
        return 130
    print("batchlab serve: stopped", file=sys.stderr, flush=True)
    return 0


def listening_socket(host: str, port: int) -> tuple[socket.socket, int]:
    """The server's socket, bound and listening before the URL is printed (a client that reads it and connects at
    once is queued, not refused); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is TCP, and a
    # socket made with proto 0 stalled every kept-alive answer about 40 ms (Nagle meeting delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock, family


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The verb's options (the parser is built by ``batchlab.cli`` without importing any web framework)."""
    p.add_argument("--host", default=DEFAULT_HOST)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port (the URL is printed)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="batches, run directories and the index")
    p.add_argument("--impl", type=Path, default=None,
                   help="implementation file (default: the reference if present, else the student module)")
    p.add_argument("--max-running", type=int, default=4, help="batches that run at once; the rest are queued")


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(host=args.host, port=args.port, data=args.data, impl=args.impl, max_running=args.max_running)
