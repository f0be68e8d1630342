"""The HTTP layer: FastAPI routes, thin over :class:`~.manager.BatchManager` (OpenAPI at ``/docs``).

Every error answers with the unified body ``{"error": {code, message, details,
hints}}``: the client's bad input 400 (413 when too large), an unknown batch
404, an action that does not fit the batch's state 409, and anything unexpected
500 with a ``request_id`` that is also in the server's log, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from ..errors import KitError, printable
from . import page, views
from .errors import http_status
from .manager import BatchManager
from .settings import MAX_UPLOAD_BYTES
from .store import COMPLETED, FAILED

log = logging.getLogger("batchlab.serve")
BatchState = Literal["queued", "running", "interrupted", "completed", "failed", "cancelled"]
DocState = Literal["pending", "processing", "done", "degraded", "failed", "rejected"]
SETTINGS_FIELDS = ("fault_rate", "seed", "concurrency", "crash", "at", "latency_ms")
#: How often a WebSocket looks at the ledger for news (seconds).
PUSH_EVERY_S = 0.25

_UPLOAD_DOC = {"requestBody": {"content": {
    "application/json": {"schema": {"type": "object", "description": "a batch file: {batch_id, documents: [...]} "
                                    "or a list of documents"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"},
        **{name: {"type": "string"} for name in SETTINGS_FIELDS}}}},
}}}


def _error(status: int, body: dict[str, Any], request_id: str | None = None) -> JSONResponse:
    if request_id:
        body["error"]["details"] = {**body["error"].get("details", {}), "request_id": request_id}
    return JSONResponse(printable(body), status_code=status,
                        headers={"X-Request-ID": request_id} if request_id else None)


def _manager(conn: HTTPConnection) -> BatchManager:
    """The app's batch manager (a dependency of every route, HTTP or WebSocket)."""
    manager: BatchManager = conn.app.state.manager
    return manager


Manager = Annotated[BatchManager, Depends(_manager)]


def create_app(manager: BatchManager) -> FastAPI:
    """The service over ``manager`` (started with the app, stopped cleanly with it)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await asyncio.to_thread(manager.shutdown)

    app = FastAPI(title="batchlab batch service", version="1", lifespan=lifespan,
                  description="Lesson 15: batches run in worker processes, checkpointed and resumable.")
    app.state.manager = manager
    app.middleware("http")(request_id)
    app.add_exception_handler(KitError, kit_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    for router in (batches, actions, pages):
        app.include_router(router)
    return app


# ---------------------------------------------------------------------------
# Every answer's request id, and every error in the one error shape
# ---------------------------------------------------------------------------


async def request_id(request: Request, call_next: Any) -> Any:
    """Tag the request and its answer with an id; an unexpected failure answers 500 with it, never a traceback."""
    rid = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]
    request.state.request_id = rid
    try:
        response = await call_next(request)
    except Exception:  # noqa: BLE001 - answered below, with the id that is in the log
        log.exception("request %s %s failed (request id %s)", request.method, request.url.path, rid)
        return _error(500, KitError("the server failed to answer this request", code="internal_error",
                                    hints=["Quote the request id when you report it; the server's log has "
                                           "the traceback."]).to_dict(), rid)
    response.headers["X-Request-ID"] = rid
    return response


async def kit_error(request: Request, exc: KitError) -> JSONResponse:
    return _error(http_status(exc), exc.to_dict(), getattr(request.state, "request_id", None))


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [{"where": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg")} for e in exc.errors()]
    err = KitError(f"invalid request: {errors[0]['where']}: {errors[0]['message']}" if errors else
                   "invalid request", code="invalid_request", details={"errors": errors},
                   hints=["See the API at /docs."])
    return _error(400, err.to_dict(), getattr(request.state, "request_id", None))


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, KitError(str(exc.detail), code=code, hints=["See the API at /docs."]
                                            ).to_dict(), getattr(request.state, "request_id", None))


# ---------------------------------------------------------------------------
# The batches: submit, list, read
# ---------------------------------------------------------------------------

batches = APIRouter(tags=["batches"])


async def _upload(request: Request) -> tuple[bytes, str, dict[str, str]]:
    """The batch file, its name and the settings, from a JSON body or a multipart form (query settings first)."""
    settings = {k: v for k, v in request.query_params.items()}
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await request.body(), "request body", settings
    form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise KitError("the form has no file field `file`", code="missing_file",
                       hints=["Send the batch file as the form field `file`."])
    settings.update({k: v for k, v in form.items() if k != "file" and isinstance(v, str)})
    return await upload.read(), upload.filename or "upload.json", settings


@batches.post("/batches", status_code=201, openapi_extra=_UPLOAD_DOC)
async def create_batch(request: Request, manager: Manager) -> Any:
    """Submit a batch (JSON body or an uploaded file); settings as query parameters or form fields."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        return _too_large(int(declared), request.state.request_id)  # refused before the body is read
    body, filename, settings = await _upload(request)
    rec = await asyncio.to_thread(manager.create, body, filename=filename, settings=settings)
    return await asyncio.to_thread(views.detail, manager, rec.id)


@batches.get("/batches")
def list_batches(manager: Manager, offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=200),
                 state: BatchState | None = None) -> dict[str, Any]:
    """The batches, newest first, a page at a time."""
    records = [r for r in manager.records() if state is None or r.state == state]
    shown = records[offset:offset + limit]
    return {"batches": [views.summary(manager, r) for r in shown], "total": len(records), "offset": offset,
            "limit": limit, "next_offset": offset + limit if offset + limit < len(records) else None}


@batches.get("/batches/{batch_id}")
def get_batch(batch_id: str, manager: Manager) -> dict[str, Any]:
    """State, counts per document state, retries, metrics against the thresholds, failure reasons, timings."""
    return views.detail(manager, batch_id)


@batches.get("/batches/{batch_id}/documents")
def documents(batch_id: str, manager: Manager, state: DocState | None = None,
              offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """The batch's documents (each with attempts and last_error), filtered by state."""
    rows = manager.progress(batch_id).documents(state)
    return {"documents": rows[offset:offset + limit], "total": len(rows), "offset": offset, "limit": limit}


@batches.websocket("/batches/{batch_id}/events")
async def events(ws: WebSocket, batch_id: str, manager: Manager) -> None:
    """Progress pushed from the ledger: a snapshot first, then news; closes with the final metrics."""
    await ws.accept()
    try:
        await _stream(ws, manager, batch_id)
    except WebSocketDisconnect:
        return
    except KitError as exc:
        await ws.send_json({"type": "error", **printable(exc.to_dict())})
        await ws.close(code=1008)


# ---------------------------------------------------------------------------
# What a batch can be asked to do
# ---------------------------------------------------------------------------

actions = APIRouter(tags=["actions"])


@actions.post("/batches/{batch_id}/resume", status_code=202)
def resume(batch_id: str, manager: Manager) -> dict[str, Any]:
    """Another pass of an interrupted or cancelled batch (409 otherwise)."""
    manager.resume(batch_id)
    return views.detail(manager, batch_id)


@actions.post("/batches/{batch_id}/retry-failed", status_code=202)
def retry_failed(batch_id: str, manager: Manager) -> dict[str, Any]:
    """Another pass for the failed documents of a finished batch; rejected inputs stay rejected."""
    manager.retry_failed(batch_id)
    return views.detail(manager, batch_id)


@actions.post("/batches/{batch_id}/cancel")
def cancel(batch_id: str, manager: Manager) -> dict[str, Any]:
    """Stop a queued or running batch; its worker stops cleanly and the batch can be resumed later."""
    manager.cancel(batch_id)
    return views.detail(manager, batch_id)


# ---------------------------------------------------------------------------
# The pages for a person (not in the API's schema)
# ---------------------------------------------------------------------------

pages = APIRouter(include_in_schema=False)


@pages.get("/", response_class=HTMLResponse)
def index(manager: Manager) -> str:
    """The task page: the batches with live progress, and the upload form."""
    return page.index_page([views.summary(manager, r) for r in manager.records()[:50]])


@pages.get("/view/{batch_id}", response_class=HTMLResponse)
def batch_view(batch_id: str, manager: Manager) -> str:
    """One batch's page: counts, metrics in green or red, failure reasons, Resume / Retry failed / Cancel."""
    return page.batch_page(views.detail(manager, batch_id))


def _too_large(size: int, request_id: str) -> JSONResponse:
    from .errors import RequestTooLarge

    err = RequestTooLarge(f"the request holds {size} bytes, more than {MAX_UPLOAD_BYTES}",
                          details={"bytes": size, "limit_bytes": MAX_UPLOAD_BYTES},
                          hints=["Split the batch into shards, each with its own batch id."])
    return _error(413, err.to_dict(), request_id)


async def _stream(ws: WebSocket, manager: BatchManager, batch_id: str) -> None:
    """One client's feed: what the batch is now, then every change until it is completed or failed.

    Messages: ``snapshot`` (the detail), ``progress`` (the summary, when it changed), ``event`` (a notable
    ledger event; ``resume`` marks a later pass's start), ``resource`` (a sample), ``pass`` (how a worker
    ended: ``killed``, ``stopped``, ``ok``...), and last ``final`` with the metrics.
    """
    rec = manager.record(batch_id)
    await ws.send_json({"type": "snapshot", "batch": await asyncio.to_thread(views.detail, manager, batch_id)})
    prog = manager.progress(batch_id)
    ev_seq = max((e["seq"] for e in prog.events), default=0)
    res_seq = max((r["seq"] for r in prog.resources), default=0)
    last: Any = None
    passes = len(rec.passes)
    while True:
        state = rec.state  # read first: once it is final, the news read next include the pass's last events
        news, samples = await asyncio.to_thread(prog.since, ev_seq, res_seq)
        for ev in news:
            ev_seq = ev["seq"]
            await ws.send_json({"type": "event", "event": ev, "resume": ev.get("ev") == "pass_start"
                                and int(ev.get("pass", 1)) > 1})
        for sample in samples:
            res_seq = sample["seq"]
            await ws.send_json({"type": "resource", "sample": sample})
        for ended in rec.passes[passes:]:  # how each worker ended, as the runner saw it (a SIGKILL from outside
            passes += 1                     # leaves no ledger event: the returncode is its only trace)
            await ws.send_json({"type": "pass", "pass": ended.__dict__})
        now = views.summary(manager, rec)
        changed = {k: v for k, v in now.items() if k not in ("updated_at", "pass_elapsed_s", "eta_s",
                                                             "throughput_docs_per_min", "resource")}
        if changed != last:
            last = changed
            await ws.send_json({"type": "progress", "batch": now})
        if state in (COMPLETED, FAILED):
            final = await asyncio.to_thread(views.detail, manager, batch_id)
            await ws.send_json({"type": "final", "batch": final, "metrics": final["metrics"]})
            await ws.close(code=1000)
            return
        if manager.closing:
            await ws.close(code=1001)
            return
        await asyncio.sleep(PUSH_EVERY_S)
