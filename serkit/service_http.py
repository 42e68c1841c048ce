"""The service's guards at the HTTP level: body size and time, bearer token, memory budget, docs.

ASGI middleware (pure ASGI, so it sees the body as it arrives, before FastAPI parses a form):

- :class:`BodyGuard` caps a request body in bytes (a declared ``Content-Length`` at once, a
  chunked body as it arrives) and in time (the whole body within ``timeout`` seconds, so a
  client that trickles bytes is answered 408 and disconnected instead of holding a worker);
- :class:`BearerToken` requires ``Authorization: Bearer <token>`` on every path but the web
  page's own files and ``/healthz``, compared in constant time.

Before the app sees a request, :func:`head_timeout_protocol` gives uvicorn a deadline for the
request line and headers (uvicorn has none: a client sending its headers a byte at a time would
hold its connection for ever).

:class:`SampleBudget` shares one budget of decoded samples among the worker threads, and
:func:`api_docs_html` renders the OpenAPI schema as a self-contained page (nothing loaded from
another site, so ``/docs`` works offline).
"""

from __future__ import annotations

import hmac
import html
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

FORM_OVERHEAD = 64 << 10  # multipart boundaries and part headers allowed on top of the file
#: Paths served without the token: the web page's own files (its API calls carry the token)
#: and the liveness check (which then says nothing about the model).
OPEN_PATHS = frozenset({"/", "/app.js", "/healthz"})


def head_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request head is not complete within ``seconds``.

    The clock starts when the connection opens and again after each answer (the next request
    on a kept-alive connection); it stops once a request's line and headers have arrived, from
    where ``BodyGuard`` takes over. Built on uvicorn's ``H11Protocol`` (the serve extra pins
    uvicorn 0.54.0): pass the class as ``uvicorn.run(..., http=...)``.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeout(H11Protocol):
        _head_timer: Any = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(seconds, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a request's head has arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadTimeout


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The service's error body ``{"error": CODE, "message": TEXT}`` with ``status``."""
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


class BodyGuard:
    """ASGI middleware capping a POST body at ``limit`` bytes and ``timeout`` seconds.

    A declared ``Content-Length`` above the limit is answered 413 at once, without reading the
    body; a body sent without one (chunked) is counted as it arrives and stopped with a 413 as
    soon as it passes the limit, so nothing larger is ever spooled to disk. A body not complete
    ``timeout`` seconds after the app first asks for it is answered 408 ``request_timeout``
    (the connection is then closed, the request being unfinished).
    """

    def __init__(self, app: Any, limit: int, timeout: float):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            problem = None
            if not length.isdigit():
                problem = error_response(400, "bad_request", f"invalid Content-Length {length.decode('latin-1')!r}")
            elif int(length) > self.limit:
                problem = error_response(413, "upload_too_large", f"request of {int(length)} bytes exceeds the limit of "
                                         f"{self.limit - FORM_OVERHEAD} bytes (plus form overhead)")
            if problem is not None:
                await problem(scope, receive, send)
                return
        received, deadline = 0, None

        async def guarded() -> dict:
            nonlocal received, deadline
            deadline = deadline or time.monotonic() + self.timeout
            try:
                with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                raise StarletteHTTPException(408, f"request body not received within {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise StarletteHTTPException(413, f"request body exceeds the limit of {self.limit - FORM_OVERHEAD} "
                                                      "bytes (plus form overhead)")
            return message

        await self.app(scope, guarded, send)


def authorized(headers: list[tuple[bytes, bytes]] | dict[bytes, bytes], token: str | None) -> bool:
    """True when no token is set, or the ``Authorization`` header is ``Bearer <token>``."""
    if token is None:
        return True
    given = dict(headers).get(b"authorization", b"")
    return hmac.compare_digest(given, b"Bearer " + token.encode())


class BearerToken:
    """ASGI middleware answering 401 ``unauthorized`` to requests without the token.

    Paths in :data:`OPEN_PATHS` pass; with ``token=None`` everything passes.
    """

    def __init__(self, app: Any, token: str | None):
        self.app, self.token = app, token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or authorized(scope["headers"], self.token):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "unauthorized", "this service needs a token: send 'Authorization: Bearer <token>'",
                                  headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class BudgetTimeout(Exception):
    """No room in the :class:`SampleBudget` within the wait allowed."""


class SampleBudget:
    """Decoded samples held at once by all requests together, shared between threads.

    A request holds its share (:meth:`hold`) from before decoding until its answer is built;
    one that does not fit waits until others release theirs.

    Args:
        total: samples (float32, 4 bytes each) all requests may hold together.
    """

    def __init__(self, total: int):
        self.total, self.used = int(total), 0
        self._room = threading.Condition()

    @contextmanager
    def hold(self, samples: int, wait: float) -> Iterator[None]:
        """Hold ``samples`` of the budget for the ``with`` block.

        Raises:
            ValueError: ``samples`` exceeds the whole budget (it could never fit).
            BudgetTimeout: no room within ``wait`` seconds.
        """
        if samples > self.total:
            raise ValueError(f"{samples} samples exceed the budget of {self.total}")
        with self._room:
            if not self._room.wait_for(lambda: self.used + samples <= self.total, timeout=wait):
                raise BudgetTimeout(f"no room for {samples} samples within {wait:g} s")
            self.used += samples
        try:
            yield
        finally:
            with self._room:
                self.used -= samples
                self._room.notify_all()


def api_docs_html(schema: dict[str, Any]) -> str:
    """The API reference as one HTML page from an OpenAPI ``schema``: no script, nothing external.

    Lists every operation (method, path, summary, query parameters, request body types and
    answers) and ends with the schema itself; a ``curl`` line shows the upload.
    """
    info = schema.get("info", {})
    parts = [f"<h1>{html.escape(info.get('title', 'API'))} {html.escape(str(info.get('version', '')))}</h1>",
             f"<p>{html.escape(info.get('description', ''))}</p>",
             ("<p>Example: <code>curl -F file=@speech.wav http://HOST:PORT/v1/recognize</code> "
              "(add <code>-H 'Authorization: Bearer TOKEN'</code> when the service has a token). "
              "The schema as JSON: <a href=\"openapi.json\">openapi.json</a>.</p>")]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op.get('summary', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                rows = "".join(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p.get('in', ''))}</td>"
                               f"<td>{html.escape(p.get('description', p.get('schema', {}).get('description', '')))}</td></tr>"
                               for p in params)
                parts.append(f"<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>{rows}</table>")
            body = op.get("requestBody", {}).get("content", {})
            if body:
                parts.append(f"<p>Body: {html.escape(', '.join(body))}</p>")
            answers = "".join(f"<li><b>{html.escape(str(code))}</b> {html.escape(r.get('description', ''))}</li>"
                              for code, r in op.get("responses", {}).items())
            parts.append(f"<ul>{answers}</ul>")
    parts.append(f"<details><summary>OpenAPI schema</summary><pre>{html.escape(json.dumps(schema, indent=2))}</pre></details>")
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
             "pre{background:#f6f6f6;padding:1rem;overflow:auto}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>API reference</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
