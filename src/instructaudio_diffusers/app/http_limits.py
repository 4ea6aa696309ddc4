"""HTTP-level limits of the web demo: what any client may send, enforced before Gradio reads a request.

The queue lets one generation run at a time, but Gradio also answers requests outside it: calls of the
events that run off the queue (the language label as you type), file uploads, queue joins. Each costs tens
of milliseconds of Python in the server process, where it holds the interpreter lock that the generation
needs between its tensor operations, so a client sending them in a loop slows a running generation several
times over, and uploads fill the disk. `RequestLimits` is a plain ASGI middleware (no Gradio import, so it
is tested on its own) that

- refuses uploads outright (403): the app has no upload component, so any upload is a client's doing;
- refuses request bodies over `max_body_bytes` (413), from the declared length or while reading, without
  buffering more than that;
- lets API calls (POSTs under `/gradio_api/`) through at `rate_per_s` on average, in bursts of `burst`: a
  call over the rate waits its turn asleep (costing no CPU), and one arriving while `max_waiting` calls
  already wait is refused at once (429). A person typing stays far below the rate; a flood is slowed to it.
  Queue joins (a generation request) have a bucket of their own, with bursts of `join_burst`, so that
  neither kind of call can crowd out the other and a burst of requests reaches the queue, which admits
  `max_queue` of them and turns the rest away (503).

Each refusal is logged in one line; repeated refusals of one kind within `log_every_s` are counted and
reported in the next line instead, so that a flood cannot fill the log either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger("instructaudio.app")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

API_PREFIX = "/gradio_api/"
UPLOAD_PATH = "/gradio_api/upload"
# How clients join the queue: Gradio's page, and the `/call/<api_name>` route of its clients.
JOIN_PATHS = ("/gradio_api/queue/join", "/gradio_api/call/")


class TokenBucket:
    """Tokens refill at `rate_per_s` up to `burst`; a taker may reserve one ahead while few others wait.

    The event loop is single-threaded, so no lock is needed.
    """

    def __init__(
        self, rate_per_s: float, burst: int, max_waiting: int, clock: Callable[[], float] = time.monotonic
    ):
        if rate_per_s <= 0 or burst < 1 or max_waiting < 0:
            raise ValueError("rate_per_s must be positive, burst >= 1 and max_waiting >= 0.")
        self.rate_per_s, self.burst, self.max_waiting = rate_per_s, burst, max_waiting
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self.waiting = 0

    def reserve(self) -> float | None:
        """Take a token: the seconds to wait before using it, or `None` when too many already wait."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        if self.waiting >= self.max_waiting:
            return None
        delay = (1.0 - self._tokens) / self.rate_per_s
        self._tokens -= 1.0  # below zero: reserved by the callers now waiting, in order
        return delay


class _RefusalLog:
    """One log line per refusal, except that repeats of a kind within `every_s` are counted, not printed."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = self._clock()
        if now - self._last.get(kind, -float("inf")) < self.every_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        more = (
            f" (and {suppressed} more like it in the last {now - self._last[kind]:.0f} s)"
            if suppressed
            else ""
        )
        self._last[kind] = now
        logger.warning("refused: %s%s", message, more)


class RequestLimits:
    """ASGI middleware enforcing the limits described in this module's docstring."""

    def __init__(
        self,
        app,
        *,
        max_body_bytes: int,
        rate_per_s: float,
        burst: int,
        max_waiting: int,
        join_burst: int | None = None,
        log_every_s: float = 10.0,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.calls = TokenBucket(rate_per_s, burst, max_waiting)
        self.joins = TokenBucket(rate_per_s, join_burst or burst, max_waiting)
        self.log = _RefusalLog(log_every_s)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if method == "POST" and path.rstrip("/").endswith(UPLOAD_PATH):
            self.log("upload", f"upload from {_client(scope)}: this app takes no files")
            return await _respond(send, 403, "This app takes no file uploads.")
        if method == "POST" and API_PREFIX in path:
            bucket = self.joins if any(join in path for join in JOIN_PATHS) else self.calls
            delay = bucket.reserve()
            if delay is None:
                self.log("rate", f"{path} from {_client(scope)}: more calls than the server answers")
                return await _respond(send, 429, "Too many requests: wait a moment and try again.")
            if delay:
                bucket.waiting += 1
                try:
                    await asyncio.sleep(delay)
                finally:
                    bucket.waiting -= 1
        if method in ("POST", "PUT", "PATCH"):
            body = await self._read_body(scope, receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
        return await self.app(scope, receive, send)

    async def _read_body(self, scope: dict, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or `None` once a 413 is sent (or the client left)."""
        too_large = f"Request body over {self.max_body_bytes // 1024} KiB: texts are limited far below that."
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            self.log("size", f"{int(declared)}-byte body to {scope['path']} from {_client(scope)}")
            await _respond(send, 413, too_large)
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                self.log(
                    "size",
                    f"body of over {self.max_body_bytes} bytes to {scope['path']} from {_client(scope)}",
                )
                await _respond(send, 413, too_large)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body once, then defers to the client (disconnects)."""
    delivered = False

    async def replay() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _client(scope: dict) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown client"


async def _respond(send: Send, status: int, message: str) -> None:
    body = message.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # Closing the connection: the client may still be sending a body that nobody will read.
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
