"""What every local page of transferlab (`serve`, the studio) does the same way before a route runs: bounded
uploads, answering only its own Host and Origin, one-line errors for a request of the wrong shape, and clients that
are too slow cut off.

- `Uploads`: an upload's bytes bounded (`BodyLimit` refuses an oversize body before it is read), its pixels checked
  from the header before a pixel is decoded, and at most one decode per CPU core at a time (another waits, then
  503).
- `SameOrigin` + `allowed_hosts`: 403 for a Host that is not this page's (DNS rebinding) or an Origin of another
  site. Served on 0.0.0.0, the page answers to this machine's own addresses and names.
- `one_line_errors`: a request FastAPI cannot validate is a 422 whose `detail` is one line naming the field.
- `run`: uvicorn with a protocol that closes a connection whose request has not arrived within `REQUEST_SECONDS`.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from ipaddress import ip_address
from typing import Any, BinaryIO

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger("transferlab")

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
MULTIPART_OVERHEAD = 64 * 1024  # the multipart envelope around the file: boundaries, headers, the file name
DECODE_WAIT = 10.0  # seconds an upload waits for a decoding slot before 503
REQUEST_SECONDS = 60.0  # a request (headers and body) must have arrived within this, or the connection is closed
REFUSED = "refused: this page only answers itself (Host or Origin is another site)"
SHUTDOWN_SECONDS = 3  # after Ctrl-C, open requests (a progress stream) get this long to end
LOOPBACK = ("127.0.0.1", "localhost", "::1")
ANY = ("0.0.0.0", "::", "")


# --- uploads ---------------------------------------------------------------------------------------------------


class Uploads:
    """The bounds on uploaded pictures, shared by every route that takes one: at most `max_bytes` bytes and
    `max_pixels` pixels, at most `slots` decoded at once (default: one per CPU core; another waits `wait` seconds,
    then 503). Every refusal is an HTTPException with a clear message."""

    def __init__(
        self,
        max_bytes: int = MAX_BYTES,
        max_pixels: int = MAX_PIXELS,
        slots: int | None = None,
        wait: float = DECODE_WAIT,
    ):
        from transferlab.utils.machine import cpu_cores

        self.max_bytes, self.max_pixels, self.wait = max_bytes, max_pixels, wait
        self.slots = threading.BoundedSemaphore(slots or cpu_cores())

    def read(self, stream: BinaryIO) -> bytes:
        """An upload's bytes: an empty one is a 400, a larger one than `max_bytes` a 413 (read no further)."""
        data = stream.read(self.max_bytes + 1)
        if not data:
            raise HTTPException(400, "empty upload: choose an image file")
        if len(data) > self.max_bytes:
            raise HTTPException(413, f"upload too large: more than {self.max_bytes} bytes")
        return data

    def check_pixels(self, data: bytes) -> tuple[int, int]:
        """The picture's size from its header, before any pixel is decoded: 415 if it is no picture, 413 if it has
        more than `max_pixels` pixels."""
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as header:
                    width, height = header.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise HTTPException(413, "image has too many pixels") from None
        except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not an image for us
            raise HTTPException(
                415, "not an image: upload a JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC or AVIF file"
            ) from None
        if width * height > self.max_pixels:
            raise HTTPException(413, f"image has too many pixels: {width}x{height} (at most {self.max_pixels:,})")
        return width, height

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold one of the decoding slots (503 when none frees up in time)."""
        if not self.slots.acquire(timeout=self.wait):
            raise HTTPException(503, "busy decoding other uploads: try again in a moment")
        try:
            yield
        finally:
            self.slots.release()


class BodyLimit:
    """ASGI middleware: a request whose Content-Length is over `limit` gets 413 before a byte of its body is read;
    one without a length is counted as it streams in and cut off with 413 once past the limit."""

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _answer(send, 413, f"upload too large: more than {self.limit} bytes")
        seen, started = 0, False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _answer(send, 413, f"upload too large: more than {self.limit} bytes")


class _TooLarge(Exception):
    pass


# --- who may ask -----------------------------------------------------------------------------------------------


class SameOrigin:
    """ASGI middleware: 403 for a request whose Host is not one `allows` accepts, or whose Origin (sent by browsers
    with every cross-site POST) is not `http://` + an accepted Host. Stops DNS rebinding and a hostile page posting
    here."""

    def __init__(self, app: Any, allows: Callable[[str], bool]):
        self.app, self.allows = app, allows

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            host = headers.get("host", "").lower()
            origin = headers.get("origin")
            if not self.allows(host) or (origin is not None and origin.lower() != f"http://{host}"):
                return await _answer(
                    send, 403, "refused: this page answers only itself (Host or Origin is another site)"
                )
        await self.app(scope, receive, send)


def allowed_hosts(host: str, port: int) -> Callable[[str], bool]:
    """Which Host headers a page served on `host`:`port` answers: that address; for a loopback address, every
    loopback name; for 0.0.0.0 or ::, also this machine's own addresses and names (never another name, which is what
    a DNS-rebinding page sends)."""
    names = {_host_port(host, port)}
    if host in LOOPBACK or host in ANY:
        names |= {_host_port(h, port) for h in LOOPBACK}
    if host in ANY:
        names |= {_host_port(n.lower(), port) for n in (socket.gethostname(), socket.getfqdn()) if n}

    def allows(header: str) -> bool:
        if header in names:
            return True
        if host not in ANY:
            return False
        name, _, given_port = header.rpartition(":")
        return given_port == str(port) and _is_own_address(name.strip("[]"))

    return allows


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@lru_cache(maxsize=256)
def _is_own_address(text: str) -> bool:
    """Whether `text` is an IP address of this machine: only such an address can be bound."""
    try:
        address = ip_address(text)
    except ValueError:
        return False
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def address_line(host: str, port: int) -> str:
    """The address to print for a page served on `host` (0.0.0.0: this machine's name, which it also answers)."""
    shown = socket.gethostname() if host in ANY else host
    return f"http://{_host_port(shown, port)}/"


def warn_if_exposed(host: str, what: str) -> None:
    if host not in LOOPBACK:
        log.warning("%s: listening on %s: anyone who can reach this machine can use it", what, host or "every address")


# --- errors ----------------------------------------------------------------------------------------------------


def one_line_errors(app: FastAPI) -> None:
    """A request of the wrong shape (a wrong type, a missing or null field, a value out of bounds) is a 422 whose
    detail is one line: where, and what is wrong."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe(error.errors())}, status_code=422)


def describe(errors: Any) -> str:
    """pydantic's errors as one line: "body.budget: Input should be a valid string"."""
    parts = []
    for problem in list(errors)[:3]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body",) or len(problem["loc"]) == 1)
        parts.append(f"{where or 'request'}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts)[:500] or "invalid request"


async def _answer(send: Callable, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- serving ---------------------------------------------------------------------------------------------------


def run(app: FastAPI, host: str, port: int, request_seconds: float = REQUEST_SECONDS) -> None:
    """Serve `app` with uvicorn; a connection whose request (headers and body) has not arrived within
    `request_seconds` to `2 * request_seconds` is closed."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        http=slow_client_protocol(request_seconds),
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,  # a page following a training keeps a stream open: Ctrl-C ends it
    )
    uvicorn.Server(config).run()


def slow_client_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, but a connection that keeps the server waiting for its request longer than `seconds`
    (checked every `seconds`: an idle keep-alive connection is uvicorn's own to close) is closed."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class SlowClientsCutOff(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._seen: object = None
            self._tick = self.loop.call_later(seconds, self._check)

        def connection_lost(self, exc: Exception | None) -> None:
            self._tick.cancel()
            super().connection_lost(exc)

        def _check(self) -> None:
            responding = self.cycle is not None and not self.cycle.response_complete
            idle = self.conn.their_state is h11.IDLE and self.timeout_keep_alive_task is not None
            waiting = self.conn.their_state is h11.SEND_BODY or (
                self.conn.their_state is h11.IDLE and not responding and not idle
            )
            request = (id(self.scope), self.conn.their_state)
            if waiting and request == self._seen:
                self.transport.close()  # the same request still incomplete after a whole period
                return
            self._seen = request if waiting else None
            self._tick = self.loop.call_later(seconds, self._check)

    return SlowClientsCutOff
