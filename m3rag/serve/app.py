"""The ``m3rag serve`` web app: one M3 encoder behind an HTTP API (FastAPI).

``create_app(encoder, settings)`` turns on the encoder's request coalescing, so concurrent
requests share forward passes (each under the encoder's token budget) on one model thread, and
serves:

- ``POST /v1/encode``: dense, sparse and ColBERT outputs (the wire format of :mod:`m3rag.serve.wire`);
- ``POST /v1/embeddings``: OpenAI-compatible dense embeddings;
- ``POST /v1/rerank``: ``query, documents, top_n -> results[index, relevance_score]`` (ColBERT or hybrid);
- ``POST /v1/score``: FlagEmbedding's ``compute_score`` of (query, passage) pairs;
- ``GET /v1/models`` (the model's identity and the limits), ``GET /v1/tokenizer`` (the tokenizer,
  so clients can count tokens and chunk without the weights), ``GET /metrics`` (Prometheus),
  ``GET /health``, and the OpenAPI page at ``/docs``.

Every request is validated before it reaches the model; a refused one gets a 4xx status and
``{"error": {"message", "type", "code"}}``. With an API key, every route but ``/health`` needs
``Authorization: Bearer <key>``. At most ``max_queue`` model requests are admitted at a time;
beyond that the answer is 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - exercised by the import test in a bare environment
    raise ImportError(
        f'm3rag serve needs FastAPI, uvicorn and prometheus-client ({exc.name} is missing): pip install "m3rag[serve]"'
    ) from exc

import numpy as np

from m3rag import __version__
from m3rag.encoder.m3 import M3Encoder
from m3rag.errors import DenseOnlyError, InputTypeError, InputValueError, M3RagError
from m3rag.reranking import arerank
from m3rag.serve import schemas
from m3rag.serve.metrics import ServerMetrics
from m3rag.serve.wire import encode_output

__all__ = ["ServeSettings", "create_app"]

logger = logging.getLogger("m3rag.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FINGERPRINT_HEADER = "x-m3rag-fingerprint"
"""Every response names the served weights; the client checks it against the identity it bound to."""
PUBLIC_PATHS = frozenset({"/health"})
_MODEL_ENDPOINTS = ("/v1/encode", "/v1/embeddings", "/v1/rerank", "/v1/score")
_KNOWN_PATHS = frozenset({*_MODEL_ENDPOINTS, "/v1/models", "/v1/tokenizer", "/metrics", "/health", "/docs", "/openapi.json"})
_INPUT_ERRORS = (InputTypeError, InputValueError, DenseOnlyError)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and security of one server."""

    api_key: str | None = None
    """Required as ``Authorization: Bearer <key>`` on every route but ``/health`` (None: no auth)."""
    max_request_texts: int = 256
    """Texts per request (encode, embeddings), documents per rerank, pairs per score; more is 413."""
    max_request_bytes: int = 16 * 2**20
    """Request body size; more is 413."""
    max_queue: int = 64
    """Model requests admitted at once (waiting or running); more is 429 with Retry-After."""
    window_ms: float = 2.0
    """How long the model thread waits for concurrent requests to join a forward pass."""
    retry_after: int = 1
    """Seconds a refused client is told to wait (``Retry-After``)."""

    def __post_init__(self) -> None:
        for name in ("max_request_texts", "max_request_bytes", "max_queue", "retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise InputValueError("the API key is empty")


class ApiError(HTTPException):
    """A refused request: status, message and the error type the client maps to its own errors."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(status, message, headers)
        self.kind = kind


def _error_body(status: int, message: str, kind: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, ensure_ascii=False, allow_nan=False).encode(), status, headers, media_type="application/json")


async def _json_off_loop(build: Callable[[], Any]) -> Response:
    """Large bodies (thousands of floats) are built and serialised in a worker thread, not on the event loop."""
    body = await asyncio.to_thread(lambda: json.dumps(build(), ensure_ascii=False, allow_nan=False).encode())
    return Response(body, media_type="application/json")


class _Admission:
    """At most ``limit`` model requests at a time; the rest are refused at once (never queued unboundedly)."""

    def __init__(self, limit: int, retry_after: int, metrics: ServerMetrics) -> None:
        self.limit, self.retry_after, self.metrics = limit, retry_after, metrics
        self.active = 0

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        if self.active >= self.limit:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                429,
                f"the server is busy ({self.active} requests queued, the limit is {self.limit}); retry after {self.retry_after} s",
                "server_busy",
                {"Retry-After": str(self.retry_after)},
            )
        self.active += 1
        self.metrics.in_flight.inc()
        try:
            yield
        finally:
            self.active -= 1
            self.metrics.in_flight.dec()


class _Guard:
    """Pure ASGI middleware around the app: API key, body size limit, metrics, fingerprint header.

    It runs before any body is read, so an unauthorised or oversized request never reaches the
    JSON parser, and it counts every response (also those FastAPI produces itself).
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, metrics: ServerMetrics, fingerprint: str) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics
        self.fingerprint = fingerprint.encode()
        self.key = settings.api_key.encode() if settings.api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _KNOWN_PATHS else "other"
        status = [500]
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (FINGERPRINT_HEADER.encode(), self.fingerprint)]
            await send(message)

        try:
            refusal = self._refuse(scope, path)
            if refusal is not None:
                code, text, kind, headers = refusal
                self.metrics.rejected.labels(kind).inc()
                await _send_error(send_wrapper, code, text, kind, headers)
                return
            await self.app(scope, self._limited(receive), send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _refuse(self, scope: Scope, path: str) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        headers = dict(scope.get("headers", []))
        if self.key is not None and path not in PUBLIC_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if not given:
                return 401, "missing API key: send 'Authorization: Bearer <key>'", "unauthorized", [(b"www-authenticate", b"Bearer")]
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                return 401, "wrong API key", "unauthorized", [(b"www-authenticate", b"Bearer")]
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, "Content-Length is not a number", "invalid_request_error", []
            if size > self.settings.max_request_bytes:
                return 413, f"request body of {size} bytes exceeds the limit of {self.settings.max_request_bytes}", "request_too_large", []
        return None

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that refuses a streamed (chunked) body once it passes the size limit."""
        limit, seen = self.settings.max_request_bytes, [0]

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    self.metrics.rejected.labels("request_too_large").inc()
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
            return message

        return wrapped


async def _send_error(send: Send, status: int, message: str, kind: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = _error_body(status, message, kind)
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """400 for a body that is not JSON, else 422; one line naming each wrong field."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "the request body is not valid JSON: " + "; ".join(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
    parts = []
    for e in errors[:10]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
    return 422, "invalid request: " + "; ".join(parts) + more


def create_app(encoder: M3Encoder, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``encoder`` (an :class:`~m3rag.M3Encoder` loaded in this process).

    Turns on the encoder's coalescing (concurrent requests share forward passes, up to
    ``max_request_texts`` texts per shared call); the app's shutdown turns it off after the
    queued requests are served.
    """
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    admission = _Admission(settings.max_queue, settings.retry_after, metrics)
    encoder.enable_coalescing(window_ms=settings.window_ms, max_texts=settings.max_request_texts, observe=metrics.observe_call)
    name = encoder.name
    started = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await asyncio.to_thread(encoder.disable_coalescing)  # serves what is still queued, then stops

    app = FastAPI(
        title="m3rag serve",
        version=__version__,
        summary="One BGE-M3 encoder for many processes: dense, sparse and ColBERT outputs from one forward pass, reranking and scoring.",
        lifespan=lifespan,
    )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        kind = exc.kind if isinstance(exc, ApiError) else "invalid_request_error" if exc.status_code < 500 else "internal_error"
        return Response(_error_body(exc.status_code, str(exc.detail), kind), exc.status_code, exc.headers, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        status, message = _validation_message(exc)
        content_type = request.headers.get("content-type", "")
        if status == 422 and "json" not in content_type:
            message = f"send the body as JSON with 'Content-Type: application/json' (got {content_type or 'none'}); {message}"
        metrics.rejected.labels("invalid").inc()
        return Response(_error_body(status, message, "invalid_request_error"), status, media_type="application/json")

    @app.exception_handler(M3RagError)
    async def m3rag_error(_: Request, exc: M3RagError) -> Response:
        if isinstance(exc, _INPUT_ERRORS):
            metrics.rejected.labels("invalid").inc()
            return Response(_error_body(400, str(exc), type(exc).__name__), 400, media_type="application/json")
        logger.exception("request failed")
        return Response(_error_body(500, f"{type(exc).__name__}: {exc}", type(exc).__name__), 500, media_type="application/json")

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        logger.exception("request failed")
        return Response(_error_body(500, f"internal error ({type(exc).__name__})", "internal_error"), 500, media_type="application/json")

    def check_texts(texts: list[str], what: str, endpoint: str, count: int | None = None) -> list[str]:
        """Not empty, at most ``max_request_texts`` (413), each text valid Unicode (a lone surrogate
        would otherwise fail the whole shared forward pass it joins)."""
        count = len(texts) if count is None else count
        if not count:
            raise ApiError(400, f"{what} is empty: send at least one")
        if count > settings.max_request_texts:
            metrics.rejected.labels("request_too_large").inc()
            raise ApiError(
                413, f"{count} {what} exceed the limit of {settings.max_request_texts} per request: split the request", "request_too_large"
            )
        for i, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(400, f"{what}[{i}] is not valid Unicode ({exc.reason} at position {exc.start})", "InputValueError") from None
        metrics.texts.labels(endpoint).inc(len(texts))
        return texts

    def usage(num_tokens: np.ndarray) -> dict[str, int]:
        total = int(num_tokens.sum())
        return {"prompt_tokens": total, "total_tokens": total}

    @app.get("/health", tags=["service"], summary="Liveness: 200 while the server runs (no API key needed).")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/v1/models",
        tags=["service"],
        response_model=schemas.ModelsResponse,
        summary="The served model: identity, token limits, request limits.",
    )
    async def models() -> Response:
        facts = {
            **encoder.identity,
            "max_length": encoder.max_length,
            "query_max_length": encoder.query_max_length,
            "passage_max_length": encoder.passage_max_length,
            "dense_only": encoder.dense_only,
            "device": str(encoder.device),
            "dtype": str(encoder.dtype).replace("torch.", ""),
            "version": __version__,
            "limits": {
                "max_request_texts": settings.max_request_texts,
                "max_request_bytes": settings.max_request_bytes,
                "max_queue": settings.max_queue,
                "max_batch_tokens": encoder.batch_tokens,
            },
        }
        return _json({"object": "list", "data": [{"id": name, "object": "model", "created": started, "owned_by": "m3rag", "m3rag": facts}]})

    tokenizer_body: list[bytes] = []

    @app.get(
        "/v1/tokenizer",
        tags=["service"],
        summary="The model's tokenizer (tokenizers JSON), to count tokens or chunk text without the weights.",
    )
    async def tokenizer(request: Request) -> Response:
        if not tokenizer_body:
            tok = encoder.tokenizer
            data = {
                "tokenizer": tok.backend_tokenizer.to_str(),
                "special_tokens": tok.special_tokens_map,
                "model_max_length": encoder.max_length,
            }
            tokenizer_body.append(await asyncio.to_thread(lambda: gzip.compress(json.dumps(data).encode(), 6)))
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(tokenizer_body[0], media_type="application/json", headers={"Content-Encoding": "gzip"})
        return Response(gzip.decompress(tokenizer_body[0]), media_type="application/json")

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics.")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/encode",
        tags=["model"],
        response_model=schemas.EncodeResponse,
        summary="Dense, sparse and ColBERT outputs of texts, from one forward pass.",
    )
    async def encode(body: schemas.EncodeRequest) -> Response:
        texts = check_texts(body.texts, "texts", "/v1/encode")
        default = encoder.query_max_length if body.kind == "query" else encoder.passage_max_length
        max_length = default if body.max_length is None else body.max_length
        async with admission():
            out = await encoder.aencode(
                texts,
                None,
                max_length,
                return_dense=body.return_dense,
                return_sparse=body.return_sparse,
                return_colbert_vecs=body.return_colbert_vecs,
            )
        return await _json_off_loop(
            lambda: {"object": "encoding", "model": name, "data": encode_output(out, body.colbert_dtype), "usage": usage(out.num_tokens)}
        )

    @app.post("/v1/embeddings", tags=["model"], response_model=schemas.EmbeddingsResponse, summary="OpenAI-compatible dense embeddings.")
    async def embeddings(body: schemas.EmbeddingsRequest) -> Response:
        raw = [body.input] if isinstance(body.input, str) else body.input
        if any(not isinstance(x, str) for x in raw):
            raise ApiError(
                400,
                "token ids are not accepted: send the texts (an OpenAI client that tokenizes first needs that turned off, "
                "e.g. langchain-openai's OpenAIEmbeddings(check_embedding_ctx_length=False))",
            )
        if body.dimensions is not None and body.dimensions != encoder.dim:
            raise ApiError(400, f"dimensions={body.dimensions}: this model's vectors have {encoder.dim} dimensions and cannot be shortened")
        texts = check_texts([str(x) for x in raw], "input", "/v1/embeddings")
        async with admission():
            out = await encoder.aencode(texts, None, encoder.passage_max_length)
        dense = out.dense
        assert dense is not None

        def build() -> dict[str, Any]:
            if body.encoding_format == "base64":
                vectors: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in dense]
            else:
                vectors = dense.tolist()
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
            return {"object": "list", "data": data, "model": name, "usage": usage(out.num_tokens)}

        return await _json_off_loop(build)

    @app.post(
        "/v1/rerank",
        tags=["model"],
        response_model=schemas.RerankResponse,
        summary="Rerank documents for a query (ColBERT or hybrid), best first.",
    )
    async def rerank(body: schemas.RerankRequest) -> Response:
        docs = check_texts([d if isinstance(d, str) else d.text for d in body.documents], "documents", "/v1/rerank")
        check_texts([body.query], "query", "/v1/rerank")  # an empty string is a query; it only must be valid Unicode
        async with admission():
            ranked = await arerank(
                encoder,
                body.query,
                docs,
                mode=body.mode,
                weights=body.weights,
                top_n=body.top_n,
                max_query_length=body.max_query_length,
                max_passage_length=body.max_passage_length,
            )
        results = []
        for r in ranked:
            result: dict[str, Any] = {"index": r.index, "relevance_score": r.score, "scores": r.scores}
            if body.return_documents:
                result["document"] = {"text": docs[r.index]}
            results.append(result)
        return _json({"id": uuid.uuid4().hex, "model": name, "results": results})

    @app.post(
        "/v1/score",
        tags=["model"],
        response_model=schemas.ScoreResponse,
        summary="FlagEmbedding's compute_score of (query, passage) pairs, every mode.",
    )
    async def score(body: schemas.ScoreRequest) -> Response:
        pairs = [(q, p) for q, p in body.pairs]
        check_texts([t for pair in pairs for t in pair], "pairs", "/v1/score", count=len(pairs))
        async with admission():
            scores = await asyncio.to_thread(
                encoder.compute_score, pairs, None, body.max_query_length, body.max_passage_length, body.weights
            )
        return _json({"model": name, "scores": scores})

    app.add_middleware(_Guard, settings=settings, metrics=metrics, fingerprint=encoder.fingerprint)
    app.state.metrics = metrics
    app.state.encoder = encoder
    return app
