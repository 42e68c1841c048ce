"""HTTP service: emotion timelines of uploaded recordings (FastAPI).

Endpoints (OpenAPI schema at ``/openapi.json``, interactive docs at ``/docs``):

- ``POST /v1/recognize`` — multipart form with the recording in the field ``file`` (any format
  soundfile reads); query ``per_channel`` (analyse each channel), ``plot`` (add a base64 PNG
  under ``plot_png``), ``windows`` (include the per-window rows), ``adapt`` (``none``,
  ``batch``: the recording's windows, ``speaker``: each channel's; :mod:`serkit.adaptation`),
  ``min_batch`` (fewest windows to adapt on), ``min_confidence`` (windows below it are
  ``uncertain``). Returns
  :meth:`serkit.inference.Timeline.to_dict`.
- ``GET /healthz`` — ``{"status": "ok", "model": {...}}`` once the model is loaded.
- ``GET /`` — the web page (``serkit/web/``): upload or record, see the timeline.

The model and the VAD load once, in :func:`create_app`. Recognition runs in worker threads
(at most ``max_workers`` at a time), so requests do not block the event loop or each other.

Every refused request gets a 4xx answer with a JSON body ``{"error": CODE, "message": TEXT}``:

======  ========================  ==============================================================
status  error                     when
======  ========================  ==============================================================
400     ``empty_upload``          the file part holds no bytes
400     ``bad_request``           the body is not a readable multipart form
413     ``upload_too_large``      more than ``max_upload_bytes`` (checked on Content-Length and
                                  while reading)
413     ``audio_too_long``        longer than ``max_duration`` seconds (from the header, before
                                  decoding)
415     ``unsupported_media_type`` the part's content type is neither ``audio/*``,
                                  ``application/octet-stream`` nor a video container of audio
422     ``invalid_request``       no ``file`` field or bad query values
422     ``unreadable_audio``      not audio, truncated header, undecodable
422     ``unusable_audio``        decodes but is unusable: empty, too short, NaN/Inf, outside
                                  [-1, 1], too short for the model's features; or the header
                                  declares more than 192 kHz or more than 8 channels
======  ========================  ==============================================================
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import soundfile as sf
from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import serkit
from serkit.audio import load_audio
from serkit.errors import AudioError, ConfigError, FeatureError, UnreadableAudioError
from serkit.inference import InferenceConfig, Recognizer, plot_timeline

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
_CHUNK = 1 << 16
#: Content types accepted for the file part (besides any ``audio/*``). Browsers label
#: MediaRecorder's WebM/Ogg recordings ``video/webm``/``video/ogg`` at times, and unknown files
#: ``application/octet-stream``.
ACCEPTED_TYPES = {"application/octet-stream", "application/ogg", "video/ogg", "video/webm", ""}


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of :func:`create_app`.

    Attributes:
        max_upload_bytes: largest accepted upload (the file part; the request may carry 64 KiB
            more of form overhead).
        max_duration: longest accepted recording in seconds.
        max_workers: recognitions running at once (worker threads).
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_duration: float = 600.0
    max_workers: int = 4

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.max_duration <= 0 or self.max_workers < 1:
            raise ConfigError("service limits must be positive")


class ServiceError(Exception):
    """A refused request: HTTP ``status``, machine-readable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


FORM_OVERHEAD = 64 << 10  # multipart boundaries and part headers allowed on top of the file


class BodyLimit:
    """ASGI middleware capping a request body at ``limit`` bytes.

    A declared ``Content-Length`` above the limit is answered 413 at once, without reading the
    body; a body sent without one (chunked) is counted as it arrives and stopped with a 413 as
    soon as it passes the limit, so nothing larger is ever spooled to disk.
    """

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            problem = None
            if not length.isdigit():
                problem = _error(400, "bad_request", f"invalid Content-Length {length.decode('latin-1')!r}")
            elif int(length) > self.limit:
                problem = _error(413, "upload_too_large", f"request of {int(length)} bytes exceeds the limit of "
                                 f"{self.limit - FORM_OVERHEAD} bytes (plus form overhead)")
            if problem is not None:
                await problem(scope, receive, send)
                return
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, f"request body exceeds the limit of {self.limit - FORM_OVERHEAD} "
                                                      "bytes (plus form overhead)")
            return message

        await self.app(scope, counted, send)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _check_content_type(content_type: str | None) -> None:
    value = (content_type or "").split(";")[0].strip().lower()
    if value.startswith("audio/") or value in ACCEPTED_TYPES:
        return
    raise ServiceError(415, "unsupported_media_type",
                       f"file part has content type {value!r}; send audio (audio/*) or application/octet-stream")


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await upload.read(_CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise ServiceError(413, "upload_too_large", f"upload exceeds the limit of {limit} bytes")
    return bytes(buf)


#: Highest sample rate and most channels accepted in an upload's header.
MAX_RATE = 192_000
MAX_CHANNELS = 8


def check_header(data: bytes, name: str, limits: ServiceLimits) -> None:
    """Refuse an upload from its header alone, before anything is decoded.

    A compressed file (FLAC of silence) can declare hours in a few kilobytes, and a forged
    header any rate and channel count: the duration, rate and channels are checked first, so
    decoding never allocates more than ``max_duration`` s x 192 kHz x 8 channels of float32.
    An unreadable header passes: :func:`serkit.audio.load_audio` then reports why.

    Raises:
        ServiceError: 413 ``audio_too_long`` or 422 ``unusable_audio``.
    """
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any header failure is reported by load_audio with its reason
        return
    if not 0 < info.samplerate <= MAX_RATE or not 0 < info.channels <= MAX_CHANNELS:
        raise ServiceError(422, "unusable_audio", f"{name}: header declares {info.samplerate} Hz and "
                           f"{info.channels} channels; accepted up to {MAX_RATE} Hz and {MAX_CHANNELS} channels")
    declared = info.frames / info.samplerate
    if declared > limits.max_duration:
        raise ServiceError(413, "audio_too_long",
                           f"{name}: {declared:.1f} s is longer than the limit of {limits.max_duration:g} s")


def recognize_bytes(recognizer: Recognizer, data: bytes, name: str, limits: ServiceLimits,
                    config: InferenceConfig, plot: bool) -> dict[str, Any]:
    """Decode, check and label one upload (runs in a worker thread).

    Raises:
        ServiceError: the upload is refused (see the module's table).
    """
    check_header(data, name, limits)
    try:
        audio = load_audio(data, name=name)
        if audio.duration > limits.max_duration:
            raise ServiceError(413, "audio_too_long",
                               f"{name}: {audio.duration:.1f} s is longer than the limit of {limits.max_duration:g} s")
        timeline = recognizer.recognize(audio, config)
    except UnreadableAudioError as exc:
        raise ServiceError(422, "unreadable_audio", str(exc)) from exc
    except (AudioError, FeatureError) as exc:
        raise ServiceError(422, "unusable_audio", str(exc)) from exc
    except ConfigError as exc:
        raise ServiceError(422, "unusable_audio", f"{name}: {exc}") from exc
    result = timeline.to_dict()
    if plot:
        result["plot_png"] = base64.b64encode(plot_timeline(timeline, audio)).decode("ascii")
    return result


def model_info(recognizer: Recognizer) -> dict[str, Any]:
    """What ``/healthz`` says about the loaded model."""
    meta = recognizer.bundle.meta
    return {
        "path": str(recognizer.bundle.path),
        "labels": recognizer.labels,
        "model": meta.get("model", {}).get("name"),
        "features": {k: v.get("name") for k, v in meta.get("features", {}).items()},
        "trained_on": {k: meta.get("trained_on", {}).get(k) for k in ("corpus", "n_utterances")},
        "serkit_version": meta.get("serkit_version"),
    }


def create_app(
    model: Recognizer | str | Path | None = None,
    *,
    limits: ServiceLimits | None = None,
    config: InferenceConfig | None = None,
) -> FastAPI:
    """The FastAPI application.

    Args:
        model: a :class:`Recognizer`, a bundle folder, or ``None`` for the shipped default model.
        limits: upload size, duration and concurrency limits (:class:`ServiceLimits`).
        config: windowing and VAD options (:class:`InferenceConfig`); ``per_channel`` can be
            switched per request.

    Raises:
        BundleError: the model or the VAD cannot be loaded (at start, not per request).
    """
    limits = limits or ServiceLimits()
    recognizer = model if isinstance(model, Recognizer) else Recognizer(model, config)
    base_config = config or recognizer.config
    limiter = CapacityLimiter(limits.max_workers)
    app = FastAPI(
        title="serkit",
        version=serkit.__version__,
        description="Speech emotion recognition: upload a recording, get an emotion timeline.",
    )
    app.state.recognizer, app.state.limits = recognizer, limits

    app.add_middleware(BodyLimit, limit=limits.max_upload_bytes + FORM_OVERHEAD)

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.get("/healthz", summary="Liveness and the loaded model")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": model_info(recognizer)}

    @app.post(
        "/v1/recognize",
        summary="Emotion timeline of one recording",
        responses={code: {"description": text} for code, text in (
            (400, "empty upload or unreadable form"), (413, "upload or recording too long"),
            (415, "not an audio content type"), (422, "missing field, or audio unreadable or unusable"))},
    )
    async def recognize(
        file: Annotated[UploadFile, File(description="The recording (WAV, FLAC, OGG, … any format soundfile reads).")],
        per_channel: Annotated[bool, Query(description="Analyse each channel on its own (stereo: left, right).")] = False,
        plot: Annotated[bool, Query(description="Add the timeline picture as base64 PNG under plot_png.")] = False,
        windows: Annotated[bool, Query(description="Include the per-window probabilities.")] = True,
        adapt: Annotated[str, Query(description="Standardise with the training statistics (none), the recording's "
                                    "own windows (batch) or each channel's (speaker).")] = base_config.adapt,
        min_confidence: Annotated[float, Query(description="Label windows below this top probability 'uncertain'.")]
        = base_config.min_confidence,
        min_batch: Annotated[int, Query(description="Fewest windows a batch or channel needs to adapt on.")]
        = base_config.min_batch,
) -> dict[str, Any]:
        _check_content_type(file.content_type)
        data = await _read_limited(file, limits.max_upload_bytes)
        name = Path(file.filename or "upload").name
        if not data:
            raise ServiceError(400, "empty_upload", f"{name}: the uploaded file is empty")
        try:
            cfg = dataclasses.replace(base_config, per_channel=per_channel, adapt=adapt,
                                      min_confidence=min_confidence, min_batch=min_batch)  # fmt: skip
        except ConfigError as exc:
            raise ServiceError(422, "invalid_request", str(exc)) from None
        result = await to_thread.run_sync(recognize_bytes, recognizer, data, name, limits, cfg, plot, limiter=limiter)
        if not windows:
            result.pop("windows")
        return result

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/app.js", include_in_schema=False)
    async def script() -> FileResponse:
        return FileResponse(WEB_DIR / "app.js", media_type="text/javascript")

    return app


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServiceLimits | None = None,
    config: InferenceConfig | None = None,
) -> None:
    """Load the model and run the service with uvicorn until interrupted (``serkit serve``).

    Binds to ``127.0.0.1`` unless another ``host`` is given.
    """
    import uvicorn

    app = create_app(model, limits=limits, config=config)
    uvicorn.run(app, host=host, port=port, log_level="info")
