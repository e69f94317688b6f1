"""The labeling server: a FastAPI app over a run's label store (Christiano et al. 2017, App. B).

The training process posts queries into ``RUN_DIR/labels.sqlite``; this app (a separate process) renders
their clips in a background thread, hands pairs to labelers and commits each answer the moment it
arrives. Either process may be restarted at any time: everything lives in the database.

HTTP API (JSON; errors are ``{"detail": "..."}`` with a 4xx status and change nothing):

* ``POST /api/claim {"labeler": NAME, "n": 2}`` → ``{"pairs": [{query_id, left, right, ...}], ...}``: the
  pairs this labeler holds, topped up to ``n`` (the shown one and the prefetched next). A pair is handed to
  one labeler at a time; only the optional repeated share (``repeat_share``) goes to a second labeler.
* ``POST /api/answer {"query_id": ID, "choice": "left|right|equal|skip", "labeler": NAME,
  "seconds": S}`` → 200, or 404 (unknown pair), 409 (already answered / held by another labeler),
  422 (malformed body, unknown choice).
* ``GET /api/info``, ``GET /api/stats``, ``GET /clips/<id>.mp4``, and the pages ``/`` and ``/stats``.

With a token set (required to bind anything but loopback) every request must carry it: header
``Authorization: Bearer T``, ``?token=T`` (then remembered in a cookie) or the ``prefrl_token`` cookie.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from prefrl.label_store import LabelStore
from prefrl.teachers import Answer, Preference

from .clips import ClipWorker
from .stats import run_stats
from .tasks import env_id_of, instructions_for

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/stats": "stats.html"}
STATIC_FILES = {"app.js", "stats.js", "style.css"}
CLIP_URL = re.compile(r"^(\d{1,12})\.mp4$")
LABELER_NAME = re.compile(r"^[\w .@+-]{1,64}$")
COOKIE = "prefrl_token"
MAX_SECONDS = 24 * 3600.0


@dataclass
class ServerSettings:
    """How the labeling server runs.

    Attributes:
        run_dir: the run whose ``labels.sqlite`` (and ``metrics.csv``) is served.
        token: required on every request when set (see the module docstring).
        repeat_share: share of answered pairs shown again to a different labeler, to measure agreement.
        render_clips: render clips in a background thread (off: pairs are served without clips).
        clip_size: clip ``(width, height)`` in pixels.
        lease_s: seconds after which a pair claimed but not answered goes back to the queue.
        seed: seed for the choice of repeated pairs.
    """

    run_dir: Path
    token: str | None = None
    repeat_share: float = 0.0
    render_clips: bool = True
    clip_size: tuple[int, int] = (320, 240)
    lease_s: float = 600.0
    seed: int | None = None


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labeler: StrictStr
    n: StrictInt = Field(default=2, ge=1, le=10)


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: StrictInt
    choice: StrictStr | StrictInt
    labeler: StrictStr
    seconds: StrictFloat | StrictInt | None = Field(default=None, ge=0)


class _Stores(threading.local):
    """One :class:`LabelStore` connection per server thread (sqlite3 connections are per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: LabelStore | None = None

    def get(self) -> LabelStore:
        if self.store is None:
            self.store = LabelStore(self.path)
        return self.store


def _check_labeler(name: str) -> str:
    name = name.strip()
    if not LABELER_NAME.match(name):
        raise HTTPException(422, "labeler must be a name of 1-64 letters, digits, spaces or . _ - @ +")
    return name


def _validation_message(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "malformed request: " + "; ".join(parts)


def create_app(settings: ServerSettings) -> FastAPI:
    """The labeling app for ``settings.run_dir`` (its store is created if missing).

    The clip worker starts with the app (uvicorn's lifespan) and stops with it.
    """
    run_dir = Path(settings.run_dir)
    store_path = run_dir / "labels.sqlite"
    LabelStore(store_path).close()  # create the schema (and the WAL database) before any request
    stores = _Stores(store_path)
    rng = np.random.default_rng(settings.seed)
    rng_lock = threading.Lock()
    true_return_cache: dict[int, float] = {}
    state: dict[str, Any] = {"worker": None}
    info_cache: dict[str, Any] = {}
    lease_s = settings.lease_s

    def instructions() -> str:
        if "instructions" not in info_cache or time.time() - info_cache["at"] > 30:
            store = stores.get()
            info_cache.update(
                instructions=instructions_for(store, run_dir),
                env_id=env_id_of(store, run_dir),
                at=time.time(),
            )
        return str(info_cache["instructions"])

    def clip_url(segment_id: int) -> tuple[str | None, str | None]:
        path, error = stores.get().clip(segment_id)
        if path is None:
            return None, error or ("clip not rendered" if not settings.render_clips else None)
        return f"/clips/{segment_id}.mp4", None

    def pair_json(query_id: int) -> dict[str, Any]:
        info = stores.get().query_info(query_id)
        left, left_error = clip_url(info["left_id"])
        right, right_error = clip_url(info["right_id"])
        return {
            "query_id": query_id,
            "left": left,
            "right": right,
            "left_error": left_error,
            "right_error": right_error,
            "repeat": info["repeat_of"] is not None,
        }

    def status(labeler: str | None = None) -> dict[str, Any]:
        store = stores.get()
        out: dict[str, Any] = {"queue": store.queue_length(lease_s=lease_s), "answers": store.num_answers()}
        if labeler is not None:
            out["count"] = store.num_answers(labeler=labeler)
        return out

    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if settings.render_clips:
            worker = ClipWorker(store_path, size=settings.clip_size)
            worker.start()
            state["worker"] = worker
        yield
        if state["worker"] is not None:
            state["worker"].stop()
            state["worker"].join(timeout=10)

    app = FastAPI(title="prefrl labeling", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(err)}, status_code=422)

    @app.middleware("http")
    async def _auth(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if settings.token is None:
            return await call_next(request)
        header = request.headers.get("authorization", "")
        from_query = request.query_params.get("token")
        supplied = (
            (header[7:] if header.lower().startswith("bearer ") else None)
            or request.headers.get("x-prefrl-token")
            or from_query
            or request.cookies.get(COOKIE)
        )
        if not supplied or not secrets.compare_digest(supplied.encode(), settings.token.encode()):
            return JSONResponse(
                {
                    "detail": "missing or wrong token: open the URL `prefrl label` printed "
                    "(it ends in ?token=...) or send the header 'Authorization: Bearer <token>'"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        if from_query:
            response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / PAGES["/"], headers={"Cache-Control": "no-store"})

    @app.get("/stats", include_in_schema=False)
    def stats_page() -> FileResponse:
        return FileResponse(STATIC / PAGES["/stats"], headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    @app.get("/clips/{name}")
    def clip(name: str) -> FileResponse:
        match = CLIP_URL.match(name)
        if match is None:
            raise HTTPException(404, "no such clip; clip URLs look like /clips/<segment id>.mp4")
        path, error = stores.get().clip(int(match.group(1)))
        if path is None:
            raise HTTPException(404, error or f"clip {name} is not rendered (yet)")
        file = (store_path.parent / path).resolve()
        if store_path.parent.resolve() not in file.parents or not file.is_file():
            raise HTTPException(404, f"clip {name} is missing on disk")
        return FileResponse(file, media_type="video/mp4", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        worker = state["worker"]
        text = instructions()
        return {
            "instructions": text,
            "env_id": info_cache.get("env_id"),
            "run": run_dir.name,
            "clips": {
                "rendering": settings.render_clips,
                "rendered": worker.rendered if worker else 0,
                "error": worker.error if worker else None,
            },
            **status(),
        }

    @app.post("/api/claim")
    def claim(body: ClaimBody) -> dict[str, Any]:
        labeler = _check_labeler(body.labeler)
        ids = stores.get().claim_queries(
            labeler, body.n, lease_s=lease_s, require_clips=settings.render_clips
        )
        return {"pairs": [pair_json(q) for q in ids], "instructions": instructions(), **status(labeler)}

    @app.post("/api/answer")
    def answer(body: AnswerBody) -> dict[str, Any]:
        labeler = _check_labeler(body.labeler)
        try:
            preference = Preference.parse(body.choice)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        store = stores.get()
        try:
            query = store.query_info(body.query_id)
        except KeyError:
            raise HTTPException(404, f"no pair {body.query_id}; ask POST /api/claim for pairs") from None
        if query["choice"] is not None:
            raise HTTPException(409, f"pair {body.query_id} is already answered")
        now = time.time()
        holder, held_at = query["assigned_to"], query["assigned_at"] or 0.0
        if holder is not None and holder != labeler and held_at > now - lease_s:
            raise HTTPException(409, f"pair {body.query_id} is held by another labeler; claim your own pairs")
        seconds = (
            float(body.seconds) if body.seconds is not None else (now - held_at if holder == labeler else 0.0)
        )
        try:
            store.add_answers([Answer(body.query_id, preference, labeler, min(seconds, MAX_SECONDS))])
        except ValueError:
            raise HTTPException(409, f"pair {body.query_id} is already answered") from None
        if settings.repeat_share > 0 and query["repeat_of"] is None:
            with rng_lock:
                repeat = rng.random() < settings.repeat_share
            if repeat:
                store.add_repeat(body.query_id)
        return {"query_id": body.query_id, "choice": preference.name.lower(), **status(labeler)}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        return run_stats(stores.get(), run_dir, true_return_cache)

    return app
