"""The FastAPI application: routes over :mod:`operations`, the token check, the body limit, the
explorer page. All coordinates are QuPath level-0 pixels; OpenAPI is at ``/docs``."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files
from typing import Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from histobridge.errors import HistobridgeError
from histobridge.server import operations as ops
from histobridge.server.jobs import FINISHED, JobContext, JobManager
from histobridge.server.problems import MEDIA_TYPE, NotFoundError, problem, problem_for
from histobridge.server.resources import Resources
from histobridge.server.settings import ServerSettings

MAX_WAIT_S = 120.0
TOKEN_HEADER = "x-histobridge-token"


def problem_response(doc: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(doc, status_code=int(doc["status"]), media_type=MEDIA_TYPE, headers=headers)


class Guard:
    """ASGI wrapper: access token on every request (when configured) and the request-body limit."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app, self.token, self.max_body = app, token, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token and not self._authorised(headers):
            doc = problem(
                401,
                "unauthorized",
                "this server needs its access token: send "
                "'Authorization: Bearer <token>' or 'X-Histobridge-Token: <token>'",
            )
            await problem_response(doc, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await problem_response(self._too_large(int(length)))(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge(seen)
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge as err:
            await problem_response(self._too_large(err.size))(scope, receive, send)

    def _authorised(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        sent = headers.get(TOKEN_HEADER, "")
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            sent = sent or auth[7:].strip()
        return bool(sent) and hmac.compare_digest(sent.encode(), self.token.encode())

    def _too_large(self, size: int) -> dict[str, Any]:
        return problem(
            413,
            "too large",
            f"request body of {size:,} bytes or more is over the limit of "
            f"{self.max_body:,} bytes; send a smaller region",
        )


class _BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


# ------------------------------------------------------------------------------------------ app


def create_app(settings: ServerSettings, resources: Resources | None = None) -> FastAPI:
    """The application for ``settings`` (projects are read and models catalogued here, once)."""
    settings.check_token_rule()
    res = resources or Resources(settings)
    jobs = JobManager(settings.workers, settings.job_ttl_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()
        res.close()

    app = FastAPI(
        title="histobridge",
        version=_version(),
        lifespan=lifespan,
        description="QuPath plugin backend: classify and synthesise regions of project images. "
        "Coordinates are QuPath level-0 pixels.",
    )
    app.state.resources, app.state.jobs, app.state.settings = res, jobs, settings

    @app.exception_handler(HistobridgeError)
    async def _known(_: Request, err: HistobridgeError) -> JSONResponse:
        return problem_response(problem_for(err))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors()[:5]]
        return problem_response(problem(400, "bad input", "; ".join(parts) or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return problem_response(problem(err.status_code, str(err.detail).lower(), str(err.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, err: Exception) -> JSONResponse:
        return problem_response(problem_for(err))

    def submit(kind: str, run: Callable[[Resources, Any, JobContext], Any], req: Any) -> Any:
        return jobs.submit(kind, lambda ctx: run(res, req, ctx))

    async def answer(job_id: str, wait: float) -> Response:
        if wait > 0:
            await _wait_for(jobs, job_id, min(wait, MAX_WAIT_S))
        record = jobs.status(job_id)
        if record["state"] == "done":
            return JSONResponse(_public(jobs.get(job_id).result, job_id), headers={"X-Job-Id": job_id})
        if record["state"] == "failed" and wait > 0:
            return problem_response(record["error"])
        return JSONResponse(record, status_code=202, headers={"Location": f"/api/jobs/{job_id}"})

    # -- status and listings (async: they answer while the workers are busy) -------------------------
    @app.get("/api/health", tags=["server"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": _version(),
            "jobs": jobs.counts(),
            "models_loaded": len(res.model_cache.cached()),
            "slides_open": len(res.slide_cache.cached()),
        }

    @app.get("/api/projects", tags=["projects"])
    async def projects() -> list[dict[str, Any]]:
        return [
            {
                "id": k,
                "name": p.folder.name,
                "images": len(p.images),
                "classes": [{"name": c.name, "color": c.color} for c in p.classes],
            }
            for k, p in res.projects.items()
        ]

    @app.get("/api/projects/{project}/images", tags=["projects"])
    def images(project: str) -> list[dict[str, Any]]:
        proj = res.project(project)
        return [_image_record(res, project, e, open_slide=True) for e in proj.images]

    @app.get("/api/projects/{project}/images/{image}", tags=["projects"])
    def image(project: str, image: str) -> dict[str, Any]:
        _, entry = res.image(project, image)
        return _image_record(res, project, entry, open_slide=True)

    @app.get("/api/projects/{project}/images/{image}/annotations", tags=["projects"])
    def annotations(project: str, image: str) -> dict[str, Any]:
        from histobridge.qupath.geojson import path_object_feature

        proj, entry = res.image(project, image)
        found = proj.annotations(entry)
        return {"type": "FeatureCollection", "features": [path_object_feature(a) for a in found.annotations]}

    @app.get(
        "/api/projects/{project}/images/{image}/thumbnail.png", tags=["projects"], response_class=Response
    )
    def thumbnail(project: str, image: str, max_px: int = Query(1024, ge=16, le=4096)) -> Response:
        _, entry = res.image(project, image)
        pixels, downsample = res.thumbnail(project, entry, max_px)
        return Response(
            ops.png(pixels), media_type="image/png", headers={"X-Downsample": repr(float(downsample))}
        )

    @app.get("/api/models", tags=["models"])
    async def models() -> list[dict[str, Any]]:
        return [m.record() for m in res.models.values()]

    # -- work --------------------------------------------------------------------------------------
    @app.post("/api/classify", tags=["work"])
    async def classify(body: ops.ClassifyRequest = Body(...), wait: float = Query(0, ge=0)) -> Response:
        """Classify the ROI: QuPath tile features with measurements, as the batch heatmap writes them."""
        return await answer(submit("classify", ops.classify, body).job_id, wait)

    @app.post("/api/synthesize", tags=["work"])
    async def synthesize(body: ops.SynthRequest = Body(...), wait: float = Query(0, ge=0)) -> Response:
        """Real tiles of the ROI, matched synthetic tiles of its class and their class-swapped twins."""
        return await answer(submit("synthesize", ops.synthesise, body).job_id, wait)

    @app.post("/api/blend/class", tags=["generator"])
    async def blend(body: ops.BlendRequest = Body(...), wait: float = Query(0, ge=0)) -> Response:
        return await answer(submit("class-blend", ops.class_blend, body).job_id, wait)

    @app.post("/api/blend/layers", tags=["generator"])
    async def layers(body: ops.LayerBlendRequest = Body(...), wait: float = Query(0, ge=0)) -> Response:
        return await answer(submit("layer-blend", ops.layer_blend, body).job_id, wait)

    @app.post("/api/seeds", tags=["generator"])
    async def seeds(body: ops.SeedSearchRequest = Body(...), wait: float = Query(0, ge=0)) -> Response:
        return await answer(submit("seed-search", ops.seed_search, body).job_id, wait)

    # -- jobs --------------------------------------------------------------------------------------
    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    async def job_status(job_id: str) -> dict[str, Any]:
        return jobs.status(job_id)

    @app.delete("/api/jobs/{job_id}", tags=["jobs"])
    async def job_cancel(job_id: str) -> dict[str, Any]:
        return jobs.cancel(job_id)

    @app.get("/api/jobs/{job_id}/result", tags=["jobs"])
    async def job_result(job_id: str, wait: float = Query(0, ge=0)) -> Response:
        await _wait_for(jobs, job_id, min(wait, MAX_WAIT_S))
        record = jobs.status(job_id)
        if record["state"] == "failed":
            return problem_response(record["error"])
        return JSONResponse(_public(jobs.result(job_id), job_id))

    @app.get("/api/jobs/{job_id}/images/{name}", tags=["jobs"], response_class=Response)
    async def job_image(job_id: str, name: str) -> Response:
        result = jobs.result(job_id)
        data = (result or {}).get("images", {}).get(name) if isinstance(result, dict) else None
        if data is None:
            raise NotFoundError(f"job {job_id} has no image {name!r}")
        return Response(data, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/jobs/{job_id}/events", tags=["jobs"])
    async def job_events(job_id: str) -> StreamingResponse:
        """Server-sent events: ``progress`` records until the job ends, then one ``end`` record."""
        job = jobs.get(job_id)

        async def stream() -> Any:
            seen = -1
            while True:
                record = jobs.status(job.job_id)
                if job.version != seen:
                    seen = job.version
                    yield f"event: progress\ndata: {json.dumps(record)}\n\n"
                if record["state"] in FINISHED:
                    yield f"event: end\ndata: {json.dumps(record)}\n\n"
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- explorer ----------------------------------------------------------------------------------
    static = files("histobridge.server") / "static"

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(_GuardMiddleware, token=settings.token, max_body=settings.max_body_bytes)
    return app


class _GuardMiddleware(Guard):
    def __init__(self, app: ASGIApp, token: str | None = None, max_body: int = 8 << 20) -> None:
        super().__init__(app, token, max_body)


async def _wait_for(jobs: JobManager, job_id: str, wait: float) -> None:
    job = jobs.get(job_id)
    deadline = time.monotonic() + wait
    while job.state not in FINISHED and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def _public(result: Any, job_id: str) -> Any:
    """A result without its PNG bytes: images become URLs under the job."""
    if not isinstance(result, dict) or "images" not in result:
        return result
    out = {k: v for k, v in result.items() if k != "images"}
    out["image_base"] = f"/api/jobs/{job_id}/images/"
    out["job"] = job_id
    return out


def _image_record(res: Resources, project: str, entry: Any, open_slide: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": entry.entry_id,
        "name": entry.name,
        "found": entry.found,
        "problem": entry.problem,
        "mpp_source": entry.mpp_source(),
    }
    try:
        rec["annotations"] = res.annotation_counts(project, entry)
    except HistobridgeError as err:
        rec["annotations"], rec["annotation_problem"] = {}, str(err)
    if open_slide and entry.found:
        try:
            with res.slide(project, entry) as slide:
                rec["width"], rec["height"] = (int(v) for v in slide.dimensions)
                rec["mpp"] = slide.mpp_or_none
                rec["mpp_source"] = getattr(slide, "mpp_source", rec["mpp_source"])
        except HistobridgeError as err:
            rec["problem"] = str(err)
    return rec


def _version() -> str:
    from histobridge import __version__

    return str(__version__)


Handler = Callable[[Request], Awaitable[Response]]

__all__ = ["create_app"]
