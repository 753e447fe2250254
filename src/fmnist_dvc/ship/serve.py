"""`fmnist serve`: the exported ONNX model over HTTP (FastAPI on uvicorn), with a page to try it.

The server runs onnxruntime on the export stage's `model.onnx` and never imports TensorFlow, so
a worker starts in about a second and holds little memory. It reads images exactly as
`fmnist predict` does (`predict.image_pixels`), so both answer alike for the same file.

Every limit is checked before work is done: the body's size from its Content-Length header (or
as it streams in, without one), the number of images, and each image's pixel count from its
header, before it is decoded. Every error is JSON, `{"error": "one sentence"}`, with a 4xx code.
A small request is answered on the event loop (the fastest way); a large one in a worker thread,
one at a time, so that `/health` and small requests are not held up behind it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import numpy as np
import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fmnist_dvc import CLASS_NAMES, IMAGE_SHAPE
from fmnist_dvc.core.errors import PipelineError
from fmnist_dvc.evaluate.tta import views
from fmnist_dvc.export.card import INPUT, NAME, read_card
from fmnist_dvc.export.runtimes import OnnxModel
from fmnist_dvc.ship.predict import TooManyImages, TooManyPixels, image_pixels, npy_batch

ENV = "FMNIST_SERVE"  # the settings' JSON, for uvicorn's worker processes
NPY = "application/x-npy"  # a NumPy .npy file, as `fmnist predict` reads one
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
INLINE_BYTES = 64_000  # bodies up to this size are answered on the event loop


@dataclass(frozen=True)
class Settings:
    """What `fmnist serve` is told; each limit is documented in docs/serve.md."""

    model: str = "exports/model.onnx"
    max_body_mb: float = 16.0  # per request
    max_images: int = 512  # per request
    max_pixels: int = 24_000_000  # per image, as its header declares (a 24-megapixel photo)
    threads: int = 0  # onnxruntime's threads per worker; 0 = every core
    host: str = "127.0.0.1"

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 1_000_000)


class BadRequest(Exception):
    """A request the server refuses; `status` is the HTTP code, the message one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Guard:
    """Refuse a body over `max_bytes` (413) before reading it: at once from its Content-Length,
    or as soon as a streamed body passes the limit. On loopback, also refuse a request whose
    Host is not a loopback name (a web page elsewhere reaching this server by DNS rebinding)."""

    def __init__(self, app: ASGIApp, max_bytes: int, loopback_only: bool) -> None:
        self.app, self.max_bytes, self.loopback_only = app, max_bytes, loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].strip("[]")
        if self.loopback_only and host not in LOOPBACK_NAMES:
            answer = error(421, f"this server answers requests to 127.0.0.1 or localhost, not {host!r}.")
            await answer(scope, receive, send)
            return
        limit = f"{self.max_bytes / 1e6:g} MB"
        refusal = error(413, f"the request body is over the {limit} limit; send fewer or smaller images.")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await refusal(scope, receive, send)
            return
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if started:  # the app answered before reading its whole body: not ours to hide
                raise
            await refusal(scope, receive, send)


class _TooLarge(Exception):
    pass


class Service:
    """The model and what the server says about it, loaded once per worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        path = Path(settings.model)
        if not path.is_file():
            raise PipelineError(f"{path} not found; run 'dvc repro export' first.")
        self.model = OnnxModel(path, threads=settings.threads)
        self.card = read_card(path)
        self.tta = tuple(self.card["tta"]) if self.card else ("none",)  # no card: nothing is known
        self.one_at_a_time = anyio.CapacityLimiter(1)  # large requests' threads: the cores are the model's
        self.info = {"name": NAME, "version": model_version(path)}

    def predict(self, pixels: np.ndarray, tta: str) -> np.ndarray:
        """(n, 10) probabilities for (n, 28, 28) pixels, averaged over the TTA views."""
        total = None
        for weight, images in views(pixels, tta):
            probs = weight * self.model.predict_on_batch(images.astype(np.float32, copy=False))
            total = probs if total is None else total + probs
        assert total is not None
        return total

    def answer(self, payload: Payload, top_k: int, tta: str) -> dict[str, Any]:
        """The response for a request's payload: images decoded and checked, classified, ranked."""
        names, pixels = payload.images(self.settings)
        probs = self.predict(pixels, tta)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        # One flat list of entries, then sliced per image: for a 256-image batch of the MLP,
        # building these objects costs a third as much as running the model.
        best = np.take_along_axis(probs, order, axis=1).ravel().tolist()
        top = [
            {"class": CLASS_NAMES[i], "index": i, "probability": p}
            for i, p in zip(order.ravel().tolist(), best, strict=True)
        ]
        predictions = [
            {"file": name, "top": top[k * top_k : (k + 1) * top_k]} for k, name in enumerate(names)
        ]
        return {"predictions": predictions, "model": self.info}

    def describe(self) -> dict[str, Any]:
        card = self.card or {}
        return {
            **self.info,
            "file": self.settings.model,
            "input": INPUT,
            "tta": list(self.tta),
            "metrics": card.get("metrics"),
            "per_class": card.get("per_class"),
            "recipe": card.get("recipe"),
            "card": card.get(
                "markdown", "No model card beside this file: it was not written by the export stage."
            ),
            "limits": {
                "max_body_mb": self.settings.max_body_mb,
                "max_images": self.settings.max_images,
                "max_pixels": self.settings.max_pixels,
            },
        }


def model_version(path: Path) -> str:
    """The GTO version tag of the checked-out commit (`fashion-classifier@v1.0.0` -> v1.0.0) when
    the served file is that commit's export, else `md5:` and the served file's md5 (what DVC
    records for it): the same on every replica, however the file was fetched."""
    root = next((p for p in path.resolve().parents if (p / "dvc.lock").is_file()), None)
    if root is not None and path.resolve().parent == root / "exports":
        tags = _git(root, "tag", "--points-at", "HEAD").split()
        versions = [t.split("@", 1)[1] for t in tags if t.startswith(f"{NAME}@")]
        unchanged = _git(root, "status", "--porcelain", "--", "dvc.lock") == ""
        if versions and unchanged:
            return max(versions, key=_release)
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip() if done.returncode == 0 else "?"


def _release(tag: str) -> tuple[int, ...]:
    """v1.10.0 after v1.9.0: GTO's tags are semantic versions."""
    return tuple(int(part) if part.isdigit() else -1 for part in tag.lstrip("v").split("."))


@dataclass
class Payload:
    """A request's images as received: multipart parts (name, bytes), or a JSON or NPY body."""

    kind: str
    parts: list[tuple[str | None, bytes]]

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.parts)

    def images(self, settings: Settings) -> tuple[list[str | None], np.ndarray]:
        """(names, (n, 28, 28) pixels), decoded and checked; BadRequest says what is wrong."""
        if self.kind == "multipart/form-data":
            return self._files(settings)
        body = self.parts[0][1]
        pixels = _npy(body, settings) if self.kind == NPY else _json(body, settings)
        return [None] * len(pixels), pixels

    def _files(self, settings: Settings) -> tuple[list[str | None], np.ndarray]:
        images = []
        for n, (filename, data) in enumerate(self.parts):
            name = filename or f"file {n + 1}"
            if not data:
                raise BadRequest(400, f"{name}: the part is empty; send the image's bytes.")
            try:
                images.append(image_pixels(data, name, max_pixels=settings.max_pixels))
            except TooManyPixels as exc:
                raise BadRequest(413, str(exc)) from None
            except PipelineError as exc:
                raise BadRequest(400, str(exc)) from None
        return [filename for filename, _ in self.parts], np.stack(images)


async def read_payload(request: Request, settings: Settings) -> Payload:
    """The request's body, read (never more than the Guard lets through), not yet decoded."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return Payload(kind, await _parts(request, settings))
    if kind in ("application/json", NPY):
        body = await request.body()
        if not body:
            what = '{"images": [28x28 arrays of 0-255 pixel values]}' if kind != NPY else "an NPY file"
            raise BadRequest(400, f"the body is empty; send {what}.")
        return Payload(kind, [(None, body)])
    raise BadRequest(
        415,
        f"content type {kind or 'none'!r} is not accepted; send multipart/form-data with 'file' "
        f'parts, application/json {{"images": [28x28 arrays]}} or an {NPY} batch.',
    )


async def _parts(request: Request, settings: Settings) -> list[tuple[str | None, bytes]]:
    too_many = f"more than {settings.max_images} files in one request; split them."
    try:
        form = await request.form(max_files=settings.max_images, max_fields=settings.max_images)
    except (MultiPartException, StarletteHTTPException) as exc:  # Starlette re-raises the first as the second
        message = str(getattr(exc, "message", None) or getattr(exc, "detail", "")).rstrip(".")
        if message.startswith("Too many"):
            raise BadRequest(413, too_many) from None
        raise BadRequest(400, f"the multipart body cannot be read ({message}).") from None
    try:
        uploads = [p for p in form.getlist("file") if not isinstance(p, str)]
        if not uploads:
            raise BadRequest(400, "the request has no 'file' part; send each image as a part named 'file'.")
        return [(upload.filename, await upload.read()) for upload in uploads]
    finally:
        await form.close()


def _npy(body: bytes, settings: Settings) -> np.ndarray:
    """An NPY file of (n, 28, 28) uint8, or floats in [0, 1]: the fast way to send a batch."""
    try:
        return npy_batch(body, "the NPY body", max_images=settings.max_images)
    except TooManyImages as exc:
        raise BadRequest(413, str(exc)) from None
    except PipelineError as exc:
        raise BadRequest(422, str(exc)) from None


def _json(body: bytes, settings: Settings) -> np.ndarray:
    try:
        data = orjson.loads(body)  # about four times json's speed on a 256-image batch
    except orjson.JSONDecodeError:
        try:  # json reads what orjson refuses but Python's JSON allows (NaN): say what is wrong
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest(400, 'the body is not valid JSON; send {"images": [28x28 arrays]}.') from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise BadRequest(
            422, 'the JSON needs a non-empty list "images" of 28x28 arrays of 0-255 pixel values.'
        )
    if len(images) > settings.max_images:
        raise BadRequest(
            413,
            f"{len(images)} images in one request, more than the {settings.max_images} allowed; split them.",
        )
    try:
        pixels = np.array(images, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        pixels = None
    if pixels is None or pixels.shape[1:] != IMAGE_SHAPE or pixels.ndim != 3:
        raise BadRequest(
            422, '"images" must be a list of 28x28 arrays of numbers (28 rows of 28 pixel values).'
        )
    if not np.isfinite(pixels).all():
        raise BadRequest(422, '"images" holds NaN or infinite values; send pixel values from 0 to 255.')
    if pixels.min() < 0 or pixels.max() > 255:
        raise BadRequest(
            422,
            f'"images" holds values from {pixels.min():g} to {pixels.max():g}; pixels run from 0 to 255.',
        )
    if not (pixels == np.round(pixels)).all():
        raise BadRequest(
            422,
            '"images" holds fractions; JSON pixels are whole numbers from 0 to 255 (multiply values '
            "in [0, 1] by 255, or send them as an NPY batch).",
        )
    return pixels


def create_app(settings: Settings) -> FastAPI:
    """The app, with the model loaded: a bad model file fails here, before anything listens."""
    service = Service(settings)
    app = FastAPI(
        title="fmnist-dvc model server",
        summary="Classifies Fashion-MNIST style images with the pipeline's exported ONNX model.",
        version=service.info["version"],
    )
    app.state.service = service
    loopback_only = settings.host in LOOPBACK_NAMES
    app.add_middleware(Guard, max_bytes=settings.max_body, loopback_only=loopback_only)
    page = files("fmnist_dvc.ship").joinpath("page.html").read_text()

    @app.exception_handler(BadRequest)
    async def _bad(_: Request, exc: BadRequest) -> JSONResponse:
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "the request"
        return error(422, f"{where}: {first['msg'].rstrip('.')}.")

    @app.exception_handler(Exception)
    async def _fault(_: Request, exc: Exception) -> JSONResponse:  # a bug: still JSON, and logged
        logging.getLogger("uvicorn.error").exception("predict failed", exc_info=exc)
        return error(500, f"the server failed on this request ({type(exc).__name__}); see its log.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {
            404: "no such path; see /docs for the API.",
            405: "this path does not take that method; see /docs.",
        }
        answer = error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))
        answer.headers.update(exc.headers or {})  # 405's Allow
        return answer

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health", summary="200 once the model is loaded")
    async def health() -> dict[str, str]:
        return {"status": "ok", **service.info}

    @app.get("/model", summary="The model: name, version, test metrics, input contract and model card")
    async def model() -> dict[str, Any]:
        return service.describe()

    @app.post(
        "/predict",
        summary="Classify images: multipart 'file' parts, JSON {\"images\": [...]} or an NPY batch",
        openapi_extra={"requestBody": _REQUEST_BODY},
    )
    async def predict(
        request: Request,
        top_k: Annotated[
            int, Query(ge=1, le=len(CLASS_NAMES), description="classes per image, best first")
        ] = 3,
        tta: Annotated[
            Literal["none", "flip"], Query(description="flip: average with the mirror image")
        ] = "none",
    ) -> Response:
        if tta not in service.tta:
            why = "its card says it was not trained on mirrored images" if service.card else "it has no card"
            raise BadRequest(400, f"tta=flip is not offered for this model ({why}); use tta=none.")
        payload = await read_payload(request, settings)
        work = partial(service.answer, payload, top_k, tta)
        if payload.size <= INLINE_BYTES:
            answer = work()
        else:
            answer = await anyio.to_thread.run_sync(work, limiter=service.one_at_a_time)
        # orjson writes a 256-image answer in a fraction of json's time (3.8 ms -> well under 1).
        return Response(orjson.dumps(answer), media_type="application/json")

    return app


_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["file"],
            }
        },
        NPY: {
            "schema": {"type": "string", "format": "binary", "description": "np.save of (n, 28, 28) uint8"}
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "images": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "items": {
                                "type": "array",
                                "items": {"type": "number", "minimum": 0, "maximum": 255},
                            },
                        },
                    }
                },
                "required": ["images"],
            }
        },
    },
}


def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: the settings come from the parent's environment."""
    return create_app(Settings(**json.loads(os.environ.get(ENV, "{}"))))


def run(settings: Settings, port: int, workers: int) -> None:
    """Serve until SIGTERM or Ctrl-C; each worker loads its own copy of the model."""
    import uvicorn

    if settings.threads == 0 and workers > 1:  # share the cores out instead of oversubscribing them
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (a container's CPU set)
        settings = Settings(**{**asdict(settings), "threads": max(1, cores // workers)})
    os.environ[ENV] = json.dumps(asdict(settings))
    uvicorn.run(
        "fmnist_dvc.ship.serve:app_from_environment",
        factory=True,
        host=settings.host,
        port=port,
        workers=workers,
        log_level="info",
        timeout_graceful_shutdown=1,
        server_header=False,
    )
