"""The HTTP server: FastAPI routes over the `Engine`, speaking `protocol`'s OpenAI API.

- `GET /health`: 503 {"status": "loading"} until the model is ready, then 200;
- `GET /v1/models`, `GET /v1/models/{id}`: the one model served (named after its run);
- `POST /v1/completions`, `POST /v1/chat/completions`: answered whole, or streamed as
  server-sent events (`data: {chunk}` lines, then `data: [DONE]`);
- `GET /v1/minigpt/info` and `POST /v1/minigpt/inside`: what the web page shows about
  the model and, for a conversation, inside it (`minigpt.serve.inside`);
- `GET /v1/minigpt/status`: the sequences decoding now, the requests waiting, the
  decode steps run so far;
- `GET /`: the web page, one self-contained file.

With an API key every route but `/health` and the page itself (static, it holds no
data) needs `Authorization: Bearer KEY`. A body larger than `max_body` bytes is refused
(413) before it is read whole; a full queue answers 429; a request that outlives
`timeout` seconds is ended (504, or an error event in a stream); a client that goes
away mid-request frees its rows at the next step. Every error is OpenAI's JSON shape.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from minigpt.generation.batch import Job, Update
from minigpt.serve.answer import Answer
from minigpt.serve.config import ServeConfig
from minigpt.serve.engine import Engine, Inbox, QueueFull
from minigpt.serve.inside import inside_record, model_info
from minigpt.serve.protocol import ApiError, parse_request
from minigpt.serve.service import Served

POLL_S = 0.25  # how often a request answered whole checks that its client is there


class State:
    """The model once loaded (None while loading), or why loading failed."""

    def __init__(self) -> None:
        self.served: Served | None = None
        self.failed: str | None = None
        self.ready = threading.Event()


def create_app(
    load: Callable[[], Served], config: ServeConfig, api_key: str | None = None
) -> FastAPI:
    """The app; `load` runs in a thread at start-up (the app answers 503 meanwhile);
    with `api_key`, requests must carry it."""
    state = State()

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=_load, args=(load, state), daemon=True).start()
        yield
        if state.served is not None:
            state.served.engine.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.minigpt = state

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(ApiError(e.status_code, str(e.detail), kind).body(), e.status_code)

    if api_key:
        app.add_middleware(KeyCheck, key=api_key)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.served is None:
            status = "failed" if state.failed else "loading"
            return JSONResponse({"status": status, "error": state.failed}, status_code=503)
        return JSONResponse({"status": "ok", "model": state.served.name})

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html(), headers={"Content-Security-Policy": CSP})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_served(state).card()]}

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> dict[str, Any]:
        served = _served(state)
        served.check_model(name)
        return served.card()

    @app.get("/v1/minigpt/info")
    async def info() -> dict[str, Any]:
        served = _served(state)
        return model_info(served) | {"limits": asdict(config)}

    @app.get("/v1/minigpt/status")
    async def status() -> dict[str, Any]:
        engine = _served(state).engine
        return {"rows": engine.decoder.rows, "waiting": engine.waiting, "steps": engine.steps}

    @app.post("/v1/minigpt/inside")
    async def inside(request: Request) -> dict[str, Any]:
        served = _served(state)
        body = await _read_json(request, config.max_body)
        future = served.engine.call(lambda: inside_record(served, body))
        return await asyncio.wrap_future(future)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _generate("completion", request, state, config)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _generate("chat", request, state, config)

    return app


# The page may run its own inline script and style and talk to this server, nothing else.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:"
)


def page_html() -> str:
    return resources.files("minigpt.serve").joinpath("page.html").read_text(encoding="utf-8")


def _load(load: Callable[[], Served], state: State) -> None:
    try:
        state.served = load()
    except Exception as e:
        state.failed = str(e) or type(e).__name__
    finally:
        state.ready.set()


def _served(state: State) -> Served:
    if state.served is None:
        raise ApiError(
            503,
            "the model is still loading; try again shortly",
            "server_error",
            code="model_loading",
        )
    return state.served


class KeyCheck:
    """ASGI middleware: every route but `/health` and the page needs `Authorization:
    Bearer KEY` (a plain ASGI layer: Starlette's `BaseHTTPMiddleware` would copy every
    streamed chunk through a task of its own)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in ("/", "/health"):
            given = Headers(scope=scope).get("authorization", "")
            scheme, _, token = given.partition(" ")
            given_key = token.strip().encode()
            if not (scheme.lower() == "bearer" and hmac.compare_digest(given_key, self.key)):
                error = ApiError(
                    401,
                    "a valid API key is needed: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                )
                await JSONResponse(error.body(), status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_json(request: Request, max_body: int) -> Any:
    """The body as JSON; 413 past `max_body` bytes (counted as it arrives), 400 if not JSON."""
    declared = request.headers.get("content-length")
    too_large = ApiError(
        413,
        f"the request body is larger than this server's {max_body:,} bytes (--max-body)",
        code="request_too_large",
    )
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise too_large
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > max_body:
            raise too_large
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON ({e})") from e


async def _generate(kind: str, request: Request, state: State, config: ServeConfig) -> Response:
    served = _served(state)
    body = await _read_json(request, config.max_body)
    if isinstance(body, dict) and body.get("model") is not None:
        served.check_model(body["model"])
    parsed = parse_request(kind, body, served.tokenizer, served.block_size, config)
    answer = Answer(parsed, served.name, served.tokenizer)
    job = parsed.job()
    updates = _submit(served.engine, job)
    deadline = asyncio.get_running_loop().time() + config.timeout
    if parsed.stream:
        stream = _events(answer, job, updates, served.engine, deadline)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    try:
        async for _ in _updates(job, updates, request, served.engine, deadline):
            pass
    except _ClientGone:
        return Response(status_code=499)
    assert job.generation is not None
    return JSONResponse(answer.whole(job.generation.completions))


def _submit(engine: Engine, job: Job) -> asyncio.Queue[Update]:
    """Queue `job`; its updates arrive on the returned queue."""
    queue: asyncio.Queue[Update] = asyncio.Queue()
    try:
        engine.submit(job, Inbox(asyncio.get_running_loop(), queue))
    except QueueFull as e:
        raise ApiError(
            429,
            f"the server is busy ({e}); try again shortly",
            "rate_limit_error",
            code="queue_full",
        ) from e
    return queue


class _ClientGone(Exception):
    pass


async def _updates(
    job: Job, queue: asyncio.Queue[Update], request: Request | None, engine: Engine,
    deadline: float,
) -> AsyncIterator[list[Update]]:  # fmt: skip
    """The job's updates as they come (several at once when the client is slower than
    the decoder); the job is cancelled when the `deadline` (the loop's clock) passes,
    when the consumer stops (a stream whose client left: Starlette cancels it) or, given
    the `request`, when its client is seen gone."""
    done = False
    try:
        while not done:
            batch = [await _next(queue, request, deadline)]
            while not queue.empty():
                batch.append(queue.get_nowait())
            done = any(u.done for u in batch)
            if done and job.error:
                raise ApiError(500, job.error, "server_error")
            yield batch
    finally:
        if not done:
            engine.cancel(job)


async def _next(queue: asyncio.Queue[Update], request: Request | None, deadline: float) -> Update:
    """The next update, or 504 once the deadline has passed; while waiting, a
    `request`'s client is checked every POLL_S seconds (a stream's is watched by
    Starlette)."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        if not queue.empty():
            return queue.get_nowait()
        until = deadline if request is None else min(deadline, loop.time() + POLL_S)
        try:
            async with asyncio.timeout_at(until):  # a timer, not a task, per wait
                return await queue.get()
        except TimeoutError:
            if request is not None and await request.is_disconnected():
                raise _ClientGone from None
    raise ApiError(504, "the request took longer than this server's timeout (--timeout)",
                   "server_error", code="timeout")  # fmt: skip


async def _events(
    answer: Answer,
    job: Job,
    queue: asyncio.Queue[Update],
    engine: Engine,
    deadline: float,
) -> AsyncIterator[bytes]:
    """The server-sent events of a streamed answer."""
    opening = "".join(_event(c) for c in answer.opening())
    if opening:
        yield opening.encode()
    try:
        async for batch in _updates(job, queue, None, engine, deadline):
            events = [answer.chunk(c) for u in batch for c in u.chunks]
            text = "".join(_event(e) for e in events if e is not None)
            if text:
                yield text.encode()
    except ApiError as e:
        yield (_event(e.body()) + "data: [DONE]\n\n").encode()
        return
    except _ClientGone:
        return
    assert job.generation is not None
    if answer.request.include_usage:
        yield _event(answer.usage_chunk(job.generation.completions)).encode()
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
