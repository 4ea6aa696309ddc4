"""The web demo's HTTP limits (`instructaudio_diffusers.app.http_limits`) on a stand-in ASGI app: no Gradio, no server."""

import asyncio
import logging

import pytest

from instructaudio_diffusers.app.http_limits import RequestLimits, TokenBucket


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_token_bucket_allows_bursts_then_the_rate_then_refuses():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, max_waiting=2, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.reserve() == pytest.approx(0.5)  # the next token, in order
    bucket.waiting += 1
    assert bucket.reserve() == pytest.approx(1.0)  # reserved behind the first waiter
    bucket.waiting += 1
    assert bucket.reserve() is None  # two already wait
    bucket.waiting = 0
    clock.now += 10.0  # long idle: refilled to the burst, never beyond
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() > 0
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=0, burst=1, max_waiting=0)


class Recorder:
    """A stand-in app that records the body it received and answers 200."""

    def __init__(self):
        self.bodies = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(middleware, path, body=b"", method="POST", declared=True, chunk=4096):
    """Run one request through `middleware`; returns `(status, response body, chunks the app was asked for)`."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    headers = [(b"content-length", str(len(body)).encode())] if declared else []
    scope = {"type": "http", "method": method, "path": path, "headers": headers, "client": ("10.0.0.1", 5)}
    sent, read = [], [0]

    async def receive():
        index = read[0]
        read[0] += 1
        if index < len(chunks):
            return {"type": "http.request", "body": chunks[index], "more_body": index + 1 < len(chunks)}
        await asyncio.sleep(3600)  # a client that stays connected

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:]), read[0]


def limits(app, **overrides):
    options = dict(max_body_bytes=1000, rate_per_s=1000.0, burst=1000, max_waiting=10)
    options.update(overrides)
    return RequestLimits(app, **options)


def test_uploads_are_refused_and_logged_once(caplog):
    app = Recorder()
    middleware = limits(app)
    with caplog.at_level(logging.WARNING, logger="instructaudio.app"):
        for _ in range(5):
            status, message, _ = call(middleware, "/gradio_api/upload", b"x" * 10)
            assert status == 403 and b"no file uploads" in message
    assert app.bodies == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "upload from 10.0.0.1" in lines[0]  # repeats within 10 s are only counted


@pytest.mark.parametrize("declared", [True, False])
def test_large_bodies_are_refused_without_reading_them(declared):
    app = Recorder()
    status, message, chunks_read = call(
        limits(app), "/gradio_api/run/language_of", b"x" * 100_000, declared=declared
    )
    assert status == 413 and b"Request body over" in message and app.bodies == []
    # Declared: refused from the header; streamed: refused once past the limit, not at the end.
    assert chunks_read == (0 if declared else 1)


def test_small_bodies_reach_the_app_whole():
    app = Recorder()
    body = b'{"data": ["' + b"y" * 900 + b'"]}'
    assert call(limits(app), "/gradio_api/run/language_of", body, chunk=100)[0] == 200
    assert app.bodies == [body]
    assert call(limits(app), "/", method="GET")[0] == 200  # pages and files are not API calls


def test_api_calls_over_the_rate_wait_then_are_refused(caplog):
    app = Recorder()
    middleware = limits(app, rate_per_s=20.0, burst=2, max_waiting=1)

    async def burst_of(count):
        results = []

        async def one():
            scope = {
                "type": "http",
                "method": "POST",
                "path": "/gradio_api/run/x",
                "headers": [],
                "client": None,
            }
            sent = []

            async def receive():
                return {"type": "http.request", "body": b"{}", "more_body": False}

            async def send(message):
                sent.append(message)

            await middleware(scope, receive, send)
            results.append(sent[0]["status"])

        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(one() for _ in range(count)))
        return sorted(results), loop.time() - start

    with caplog.at_level(logging.WARNING, logger="instructaudio.app"):
        statuses, elapsed = asyncio.run(burst_of(5))
    # Two from the burst at once, one waits its turn (1/20 s), two find the waiting slot taken.
    assert statuses == [200, 200, 200, 429, 429] and elapsed >= 0.04
    assert len(app.bodies) == 3
    assert any("more calls than the server answers" in r.getMessage() for r in caplog.records)


def test_queue_joins_have_a_bucket_of_their_own():
    app = Recorder()
    middleware = limits(app, rate_per_s=0.001, burst=1, max_waiting=0, join_burst=3)
    assert call(middleware, "/gradio_api/run/language_of", b"{}")[0] == 200
    assert call(middleware, "/gradio_api/run/language_of", b"{}")[0] == 429  # the calls' burst is spent
    statuses = [
        call(middleware, path, b"{}")[0]
        for path in ["/gradio_api/queue/join", "/gradio_api/call/generate"] * 2
    ]
    assert statuses == [200, 200, 200, 429]  # joins still had their own burst of 3
