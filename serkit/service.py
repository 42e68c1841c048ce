"""HTTP service: emotion timelines of uploaded recordings (FastAPI).

Endpoints (OpenAPI schema at ``/openapi.json``, its reference page at ``/docs``, served by
serkit itself with nothing loaded from another site):

- ``POST /v1/recognize`` — multipart form with the recording in the field ``file`` (any format
  soundfile reads); query ``per_channel`` (analyse each channel), ``plot`` (add a base64 PNG
  under ``plot_png``), ``windows`` (include the per-window rows), ``adapt`` (``none``,
  ``batch``: the recording's windows, ``speaker``: each channel's; :mod:`serkit.adaptation`),
  ``min_batch`` (fewest windows to adapt on), ``min_confidence`` (windows below it are
  ``uncertain``). Returns
  :meth:`serkit.inference.Timeline.to_dict`.
- ``GET /healthz`` — ``{"status": "ok", "model": {...}}`` once the model is loaded (without the
  model, and with ``"token_required": true``, to a caller without the token).
- ``GET /`` — the web page (``serkit/web/``): upload or record, see the timeline.

The model and the VAD load once, in :func:`create_app`. Recognition runs in worker threads
(at most ``max_workers`` at a time), so requests do not block the event loop or each other; a
request waiting for a worker keeps its upload in the form parser's spool file (1 MiB in memory,
the rest on disk), not in memory.

Memory is bounded (:class:`ServiceLimits`): an upload is held as bytes (at most
``max_upload_bytes``), checked from its header (rate, channels, duration, and its samples,
duration x rate x channels, against ``max_samples``), then decoded block by block with down-mix
and resampling to the model's rate as it goes (:func:`serkit.audio.decode_audio`), so only the
decoded result is ever whole in memory. Its size is reserved from one budget shared by all
requests (``memory_samples``) before decoding starts; a request that does not fit waits.

With a token (``token``), every request but the web page's files and ``/healthz`` needs
``Authorization: Bearer <token>``. A request's head must arrive within ``head_timeout`` seconds
(:func:`serve`) and its body within ``body_timeout``.

Every refused request gets a 4xx (or 503) answer with a JSON body ``{"error": CODE, "message":
TEXT}`` naming the upload, never a Python object:

======  ========================  ==============================================================
status  error                     when
======  ========================  ==============================================================
400     ``empty_upload``          the file part holds no bytes
400     ``bad_request``           the body is not a readable multipart form
401     ``unauthorized``          a token is set and the request does not carry it
408     ``request_timeout``       the body did not arrive within ``body_timeout`` seconds
413     ``upload_too_large``      more than ``max_upload_bytes`` (checked on Content-Length and
                                  while reading)
413     ``audio_too_long``        longer than ``max_duration`` seconds (from the header, before
                                  decoding; while decoding when the header gives no length)
413     ``audio_too_large``       more samples (duration x rate x channels) than
                                  ``max_samples``, or a decoded size beyond ``memory_samples``
415     ``unsupported_media_type`` the part's content type is neither ``audio/*``,
                                  ``application/octet-stream`` nor a video container of audio
422     ``invalid_request``       no ``file`` field or bad query values
422     ``unreadable_audio``      not audio, truncated header, undecodable
422     ``unusable_audio``        decodes but is unusable: empty, too short, NaN/Inf, outside
                                  [-1, 1], too short for the model's features; or the header
                                  declares more than 192 kHz or more than 8 channels
503     ``busy``                  the memory budget stayed full for ``BUDGET_WAIT_S`` seconds
======  ========================  ==============================================================
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from anyio import CapacityLimiter, Semaphore, to_thread
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import serkit
from serkit.audio import (
    AudioHeader,
    audio_header,
    decode_audio,
    decode_peak_samples,
    resampled_length,
)
from serkit.errors import (
    AudioError,
    ConfigError,
    FeatureError,
    TooLongAudioError,
    UnreadableAudioError,
)
from serkit.inference import InferenceConfig, Recognizer, plot_timeline
from serkit.service_http import (
    FORM_OVERHEAD,
    BearerToken,
    BodyGuard,
    BudgetTimeout,
    SampleBudget,
    api_docs_html,
    authorized,
    error_response,
    head_timeout_protocol,
)

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
_CHUNK = 1 << 16
#: Content types accepted for the file part (besides any ``audio/*``). Browsers label
#: MediaRecorder's WebM/Ogg recordings ``video/webm``/``video/ogg`` at times, and unknown files
#: ``application/octet-stream``.
ACCEPTED_TYPES = {"application/octet-stream", "application/ogg", "video/ogg", "video/webm", ""}
#: Highest sample rate and most channels accepted in an upload's header.
MAX_RATE = 192_000
MAX_CHANNELS = 8
#: Seconds a request waits for room in the memory budget before a 503.
BUDGET_WAIT_S = 120.0


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of :func:`create_app` (``docs/security.md`` gives the memory they imply).

    Attributes:
        max_upload_bytes: largest accepted upload (the file part; the request may carry 64 KiB
            more of form overhead).
        max_duration: longest accepted recording in seconds.
        max_workers: recognitions running at once (worker threads).
        max_samples: most samples one upload may hold, duration x rate x channels as its header
            declares (the decoding work); the default is 150 s at 192 kHz in 8 channels, or
            600 s at 48 kHz in 8 channels.
        memory_samples: most decoded samples (float32) all requests hold at once: each reserves
            what its decoding needs (:func:`serkit.audio.decode_peak_samples`, at the model's
            rate, down-mixed unless channels are analysed one by one) plus its decoded size again
            for the analysis's copies; the default (600 s of 16 kHz in 8 channels, twice, plus
            decoding blocks) fits any upload the other limits accept for the default model.
        head_timeout: seconds within which a request's line and headers must arrive (the
            connection is closed otherwise).
        body_timeout: seconds within which a request body must arrive.
        keep_alive_timeout: seconds an idle keep-alive connection stays open (uvicorn).
        max_connections: open connections and requests at once before uvicorn answers 503.
    """

    max_upload_bytes: int = 20 * 1024 * 1024
    max_duration: float = 600.0
    max_workers: int = 4
    max_samples: int = 150 * MAX_RATE * MAX_CHANNELS
    memory_samples: int = 160_000_000
    head_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: int = 5
    max_connections: int = 64

    def __post_init__(self) -> None:
        values = dataclasses.astuple(self)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 for v in values):
            raise ConfigError("service limits must be positive numbers")


class ServiceError(Exception):
    """A refused request: HTTP ``status``, machine-readable ``code``, human ``message``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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


def check_header(data: bytes, name: str, limits: ServiceLimits) -> AudioHeader:
    """Refuse an upload from its header alone, before anything is decoded.

    A compressed file (FLAC of silence) can declare hours in a few kilobytes, and a forged
    header any rate and channel count: the rate, channels, duration and samples (duration x
    rate x channels) are checked first. A header without a total length passes here; decoding
    stops once the file passes the limits.

    Returns:
        The header.

    Raises:
        ServiceError: 422 ``unreadable_audio``, 422 ``unusable_audio``, 413 ``audio_too_long``
            or 413 ``audio_too_large``.
    """
    try:
        header = audio_header(data, name=name)
    except UnreadableAudioError as exc:
        raise ServiceError(422, "unreadable_audio", str(exc)) from exc
    if not 0 < header.sample_rate <= MAX_RATE or not 0 < header.channels <= MAX_CHANNELS:
        raise ServiceError(422, "unusable_audio", f"{name}: header declares {header.sample_rate} Hz and "
                           f"{header.channels} channels; accepted up to {MAX_RATE} Hz and {MAX_CHANNELS} channels")
    if header.duration is not None and header.duration > limits.max_duration:
        raise ServiceError(413, "audio_too_long",
                           f"{name}: {header.duration:.1f} s is longer than the limit of {limits.max_duration:g} s")
    if header.frames is not None and header.frames * header.channels > limits.max_samples:
        raise ServiceError(413, "audio_too_large", f"{name}: {header.duration:.1f} s at {header.sample_rate} Hz in "
                           f"{header.channels} channels is {header.frames * header.channels} samples, more than the "
                           f"limit of {limits.max_samples}")
    return header


def max_frames(header: AudioHeader, limits: ServiceLimits) -> int:
    """Most frames of this upload that decoding accepts: its own count, or the limits' when unknown."""
    allowed = min(int(limits.max_duration * header.sample_rate), limits.max_samples // header.channels)
    return allowed if header.frames is None else min(header.frames, allowed)


def memory_share(recognizer: Recognizer, header: AudioHeader, limits: ServiceLimits, config: InferenceConfig) -> int:
    """Samples (float32, 4 bytes each) one upload reserves from the memory budget.

    What decoding holds at its peak (:func:`serkit.audio.decode_peak_samples` of
    :func:`max_frames` frames at the model's rate, down-mixed unless channels are analysed one
    by one) plus the decoded size again: the analysis's copies (the VAD's 16 kHz version of a
    channel, the plot's envelope) stay below one more decoded recording.
    """
    rate, mono = recognizer.analysis_format(header, config)
    frames = max_frames(header, limits)
    decoded = (1 if mono else header.channels) * resampled_length(frames, header.sample_rate, rate)
    return decode_peak_samples(frames, header.sample_rate, header.channels, sample_rate=rate, mono=mono) + decoded


def recognize_bytes(recognizer: Recognizer, data: bytes, name: str, limits: ServiceLimits,
                    config: InferenceConfig, plot: bool, budget: SampleBudget | None = None) -> dict[str, Any]:
    """Check, decode and label one upload (runs in a worker thread), within the memory budget.

    Raises:
        ServiceError: the upload is refused (see the module's table).
    """
    header = check_header(data, name, limits)
    budget = budget or SampleBudget(limits.memory_samples)
    rate, mono = recognizer.analysis_format(header, config)
    frames = max_frames(header, limits)
    share = memory_share(recognizer, header, limits, config)
    if share > budget.total:
        raise ServiceError(413, "audio_too_large", f"{name}: decoding needs {share} samples of memory, more than the "
                           f"service's budget of {budget.total}")
    try:
        with budget.hold(share, BUDGET_WAIT_S):
            audio = decode_audio(data, sample_rate=rate, mono=mono, max_frames=frames, name=name)
            timeline = recognizer.recognize(audio, config)
            result = timeline.to_dict()
            if plot:
                result["plot_png"] = base64.b64encode(plot_timeline(timeline, audio)).decode("ascii")
    except BudgetTimeout as exc:
        raise ServiceError(503, "busy", f"{name}: the server is busy with other recordings; try again later") from exc
    except TooLongAudioError as exc:
        raise ServiceError(413, "audio_too_long", f"{name}: longer than the limits ({limits.max_duration:g} s, "
                           f"{limits.max_samples} samples)") from exc
    except UnreadableAudioError as exc:
        raise ServiceError(422, "unreadable_audio", str(exc)) from exc
    except (AudioError, FeatureError) as exc:
        raise ServiceError(422, "unusable_audio", str(exc)) from exc
    except ConfigError as exc:
        raise ServiceError(422, "unusable_audio", f"{name}: {exc}") from exc
    return result


def model_info(recognizer: Recognizer) -> dict[str, Any]:
    """What ``/healthz`` says about the loaded model (its folder's name, never a full path)."""
    meta = recognizer.bundle.meta
    return {
        "name": Path(recognizer.bundle.path).name,
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
    token: str | None = None,
) -> FastAPI:
    """The FastAPI application.

    Args:
        model: a :class:`Recognizer`, a bundle folder, or ``None`` for the shipped default model.
        limits: upload, duration, sample, memory, time and concurrency limits
            (:class:`ServiceLimits`).
        config: windowing and VAD options (:class:`InferenceConfig`); ``per_channel`` can be
            switched per request.
        token: require ``Authorization: Bearer <token>`` (module docstring); ``None``: open.

    Raises:
        BundleError: the model or the VAD cannot be loaded (at start, not per request).
        ConfigError: an empty token.
    """
    if token is not None and not token.strip():
        raise ConfigError("the service token is empty")
    limits = limits or ServiceLimits()
    # the workers' encoder runs share the cores: each gets cores // workers threads (one run of
    # 2 threads per worker on 2 cores: 10.0 req/s at 4 workers, 1 thread each: 12.4; measured)
    threads = max(1, (os.cpu_count() or 1) // limits.max_workers)
    recognizer = model if isinstance(model, Recognizer) else Recognizer(model, config, threads=threads)
    base_config = config or recognizer.config
    limiter = CapacityLimiter(limits.max_workers)
    in_memory = Semaphore(limits.max_workers)
    budget = SampleBudget(limits.memory_samples)
    app = FastAPI(
        title="serkit",
        version=serkit.__version__,
        description="Speech emotion recognition: upload a recording, get an emotion timeline.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.recognizer, app.state.limits, app.state.budget = recognizer, limits, budget

    app.add_middleware(BodyGuard, limit=limits.max_upload_bytes + FORM_OVERHEAD, timeout=limits.body_timeout)
    app.add_middleware(BearerToken, token=token)

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return error_response(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
                 413: "upload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the server log has the details")

    @app.get("/healthz", summary="Liveness and the loaded model")
    async def healthz(request: Request) -> dict[str, Any]:
        if not authorized(request.headers.raw, token):
            return {"status": "ok", "token_required": True}
        return {"status": "ok", "token_required": token is not None, "model": model_info(recognizer)}

    @app.post(
        "/v1/recognize",
        summary="Emotion timeline of one recording",
        responses={code: {"description": text} for code, text in (
            (400, "empty upload or unreadable form"), (401, "token missing or wrong"), (408, "body too slow"),
            (413, "upload or recording too long or too large"), (415, "not an audio content type"),
            (422, "missing field, or audio unreadable or unusable"), (503, "memory budget full"))},
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
        name = Path(file.filename or "upload").name
        try:
            cfg = dataclasses.replace(base_config, per_channel=per_channel, adapt=adapt,
                                      min_confidence=min_confidence, min_batch=min_batch)  # fmt: skip
        except ConfigError as exc:
            raise ServiceError(422, "invalid_request", str(exc)) from None
        async with in_memory:  # at most max_workers uploads held as bytes; others wait spooled by the form parser
            data = await _read_limited(file, limits.max_upload_bytes)
            if not data:
                raise ServiceError(400, "empty_upload", f"{name}: the uploaded file is empty")
            result = await to_thread.run_sync(recognize_bytes, recognizer, data, name, limits, cfg, plot, budget,
                                              limiter=limiter)
        if not windows:
            result.pop("windows")
        return result

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(api_docs_html(app.openapi()))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/app.js", include_in_schema=False)
    async def script() -> FileResponse:
        return FileResponse(WEB_DIR / "app.js", media_type="text/javascript")

    return app


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for anything else."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    model: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServiceLimits | None = None,
    config: InferenceConfig | None = None,
    token: str | None = None,
) -> None:
    """Load the model and run the service with uvicorn until interrupted (``serkit serve``).

    Binds to ``127.0.0.1`` unless another ``host`` is given; binding elsewhere without a
    ``token`` logs a warning. Idle keep-alive connections close after
    ``limits.keep_alive_timeout`` seconds, a connection whose request head takes longer than
    ``limits.head_timeout`` is closed, and uvicorn answers 503 beyond ``limits.max_connections``
    connections.
    """
    import uvicorn

    limits = limits or ServiceLimits()
    if token is None and not is_loopback(host):
        log.warning("serving on %s without a token: anyone who can reach it can use it "
                    "(set SERKIT_TOKEN or --token, or put it behind a proxy that authenticates)", host)
    app = create_app(model, limits=limits, config=config, token=token)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=limits.keep_alive_timeout,
                limit_concurrency=limits.max_connections, http=head_timeout_protocol(limits.head_timeout))
