"""The remote encoder: an ``m3rag serve`` server used where an :class:`~m3rag.M3Encoder` is.

:class:`RemoteM3Encoder` has the local encoder's surface (``encode``/``aencode``,
``encode_queries``/``encode_corpus`` and their async twins, ``compute_score`` and the rest of
FlagEmbedding's scoring API, ``identity``, ``tokenizer``) and returns the same
:class:`~m3rag.M3Output` / :class:`~m3rag.M3Item`, so ``M3Index``, ``m3rag.rerank`` and every
LangChain and LlamaIndex class take it, also by name: ``model_name="http://127.0.0.1:8000"``.

Needs httpx only (no FastAPI). Connections are pooled (one sync client, one async client per
event loop). A refused or unreachable server is retried with exponential backoff, then raises
:class:`~m3rag.ServiceUnavailableError`, as does a connection that breaks mid-request or a
server that does not answer within ``timeout``; an error answer raises the local encoder's
error for bad input (:class:`~m3rag.InputValueError`, :class:`~m3rag.InputTypeError`,
:class:`~m3rag.DenseOnlyError`) and :class:`~m3rag.RemoteError` (with the HTTP status) for the
rest. Every response names the served weights; if they change under a running client, calls
raise :class:`~m3rag.ModelMismatchError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, overload

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised in an environment without httpx
    raise ImportError('the remote encoder needs httpx: pip install "m3rag[serve]" (or pip install httpx)') from exc

from m3rag import __version__
from m3rag.encoder.m3_scoring import M3ScoringMixin
from m3rag.encoder.output import M3Item, M3Output
from m3rag.encoder.registry import REGISTRY, model_key
from m3rag.encoder.truncation import warn_truncated
from m3rag.errors import DenseOnlyError, InputTypeError, InputValueError, ModelMismatchError, RemoteError, ServiceUnavailableError
from m3rag.serve.wire import ArrayDType, concat_outputs, decode_output, empty_output
from m3rag.validation import check_positive_int, check_texts

__all__ = ["API_KEY_ENV", "DEFAULT_TIMEOUT", "RemoteM3Encoder"]

API_KEY_ENV = "M3RAG_API_KEY"
"""The API key used when none is passed (so ``model_name="http://..."`` works with a key too)."""
DEFAULT_TIMEOUT = 120.0
"""Seconds to wait for an answer; a request holds at most ``max_request_texts`` texts."""
FINGERPRINT_HEADER = "x-m3rag-fingerprint"
_INPUT_ERRORS: dict[str, type[Exception]] = {
    "InputValueError": InputValueError,
    "InputTypeError": InputTypeError,
    "DenseOnlyError": DenseOnlyError,
}


class RemoteM3Encoder(M3ScoringMixin):
    """The encoder served by ``m3rag serve`` at ``url``, with :class:`~m3rag.M3Encoder`'s surface.

    ``RemoteM3Encoder(url, api_key=None, *, timeout=120.0, connect_timeout=5.0, retries=3,
    backoff=0.2, colbert_dtype="float32")``. The model's identity (dims, vocabulary, fingerprint,
    token limits) is fetched from ``/v1/models`` at construction, so an index checks it like a
    local encoder's: an index built locally accepts the remote encoder of the same weights and
    refuses another. ``name`` is the URL (an index saved through it reloads through it).
    ``api_key`` defaults to ``$M3RAG_API_KEY``. ``colbert_dtype="float16"`` halves ColBERT
    transfers at ~1e-3 precision; float32 results equal the local encoder's (to float rounding
    of a different batch shape, ~1e-6). Calls larger than the server's per-request limits are
    split into several requests. Safe to use from several threads and event loops.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.2,
        colbert_dtype: ArrayDType = "float32",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InputValueError(f"url must start with http:// or https://, got {url!r}")
        if colbert_dtype not in ("float32", "float16"):
            raise InputValueError(f"colbert_dtype must be 'float32' or 'float16', got {colbert_dtype!r}")
        for value, what, least in ((timeout, "timeout", 1e-3), (connect_timeout, "connect_timeout", 1e-3), (backoff, "backoff", 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
                raise InputValueError(f"{what} must be a number of seconds >= {least:g}, got {value!r}")
        self.url = url.rstrip("/")
        self.name: str = self.url
        self.retries: int = check_positive_int(retries, "retries", minimum=0)
        self.backoff = float(backoff)
        self.colbert_dtype: ArrayDType = colbert_dtype
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        headers = {"User-Agent": f"m3rag/{__version__}", "Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._httpx_options: dict[str, Any] = dict(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=32),
        )
        self._client = httpx.Client(**self._httpx_options)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self.fingerprint: str = ""
        try:
            facts = self._models()
        except BaseException:
            self._client.close()
            raise
        self.model: str = str(facts["name"])
        """The server's name for the model (a hub id or a path on the server)."""
        self.dim: int = int(facts["dim"])
        self.colbert_dim: int | None = None if facts["colbert_dim"] is None else int(facts["colbert_dim"])
        self.vocab_size: int = int(facts["vocab_size"])
        self.max_length: int = int(facts["max_length"])
        self.query_max_length: int = int(facts["query_max_length"])
        self.passage_max_length: int = int(facts["passage_max_length"])
        self._dense_only = bool(facts["dense_only"])
        limits = facts["limits"]
        self.max_request_texts: int = int(limits["max_request_texts"])
        self.max_request_bytes: int = int(limits["max_request_bytes"])
        self.fingerprint = str(facts["fingerprint"])

    # ------------------------------------------------------------------ sharing
    @classmethod
    def shared(cls, url: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> RemoteM3Encoder:
        """The process-wide instance for ``(url, api key, options)``: every component naming the
        server shares one connection pool and one identity check."""
        if not isinstance(url, str):
            raise InputTypeError(f"url must be a str, got {type(url).__name__}")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        digest = hashlib.sha256(key.encode()).hexdigest() if key else None
        options = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
        return REGISTRY.get(
            (cls.__name__, model_key(url), digest, float(timeout), options),
            lambda: cls(url, api_key=key, timeout=timeout, **kwargs),
        )

    def close(self) -> None:
        """Close the pooled connections (the instance can no longer be used)."""
        self._client.close()
        with self._lock:
            self._aclients.clear()

    async def aclose(self) -> None:
        """Close the pooled connections of the running event loop (call before the loop ends)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def __enter__(self) -> RemoteM3Encoder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __repr__(self) -> str:
        heads = "dense only" if self.dense_only else "dense+sparse+colbert"
        return f"RemoteM3Encoder({self.url!r}, model={self.model!r}, {heads})"

    # ------------------------------------------------------------------ facts
    @property
    def dense_only(self) -> bool:
        return self._dense_only

    @property
    def identity(self) -> dict[str, Any]:
        """What an index needs to know it was built by the same model (the name is the URL)."""
        return {
            "name": self.name,
            "dim": self.dim,
            "colbert_dim": self.colbert_dim,
            "vocab_size": self.vocab_size,
            "fingerprint": self.fingerprint,
        }

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer, fetched once from ``/v1/tokenizer`` (a transformers fast tokenizer):
        for counting tokens and chunking text without the weights."""
        with self._lock:
            if self._tokenizer is None:
                from tokenizers import Tokenizer
                from transformers import PreTrainedTokenizerFast

                data = self._request("GET", "/v1/tokenizer")
                self._tokenizer = PreTrainedTokenizerFast(
                    tokenizer_object=Tokenizer.from_str(data["tokenizer"]),
                    model_max_length=data["model_max_length"],
                    **data["special_tokens"],
                )
            return self._tokenizer

    def _models(self) -> dict[str, Any]:
        body = self._request("GET", "/v1/models")
        try:
            facts = dict(body["data"][0]["m3rag"])
            missing = [
                k
                for k in (
                    "name",
                    "dim",
                    "colbert_dim",
                    "vocab_size",
                    "fingerprint",
                    "max_length",
                    "query_max_length",
                    "passage_max_length",
                    "dense_only",
                    "limits",
                )
                if k not in facts
            ]
        except (KeyError, IndexError, TypeError):
            missing = ["data[0].m3rag"]
        if missing:
            raise RemoteError(f"{self.url} is not an m3rag server: /v1/models lacks {', '.join(missing)}", 200)
        return facts

    # ------------------------------------------------------------------ encoding
    # M3Encoder.encode's overloads (a str gives an M3Item); M3ScoringMixin declares encode(**kwargs)
    @overload
    def encode(  # type: ignore[overload-overlap]
        self,
        sentences: str,
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Item: ...
    @overload
    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Output: ...
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Output | M3Item:
        """:meth:`M3Encoder.encode` on the server: same arguments, same result and warnings.
        ``batch_size`` and ``batch_tokens`` are checked but the server batches by its own budget."""
        texts, single = check_texts(sentences)
        options = self._options(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens)
        parts = [self._decode(self._request("POST", "/v1/encode", body), n) for body, n in self._bodies(texts, options)]
        out = self._finish(parts, options)
        return out.item(0) if single else out

    @overload
    async def aencode(  # type: ignore[overload-overlap]
        self,
        sentences: str,
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> M3Item: ...
    @overload
    async def aencode(
        self,
        sentences: Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> M3Output: ...
    async def aencode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> M3Output | M3Item:
        """:meth:`encode` for asyncio (pooled async connections; the event loop never blocks)."""
        texts, single = check_texts(sentences)
        options = self._options(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens)
        parts = [self._decode(await self._arequest("POST", "/v1/encode", body), n) for body, n in self._bodies(texts, options)]
        out = self._finish(parts, options)
        return out.item(0) if single else out

    @overload
    def encode_queries(self, queries: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    def encode_queries(
        self, queries: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    def encode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`encode` with the query length limit by default."""
        return self.encode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    @overload
    def encode_corpus(self, corpus: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    def encode_corpus(
        self, corpus: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    def encode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`encode` with the passage length limit by default."""
        return self.encode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    @overload
    async def aencode_queries(
        self, queries: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Item: ...
    @overload
    async def aencode_queries(
        self, queries: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    async def aencode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`aencode` with the query length limit by default."""
        return await self.aencode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    @overload
    async def aencode_corpus(self, corpus: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    async def aencode_corpus(
        self, corpus: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    async def aencode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`aencode` with the passage length limit by default."""
        return await self.aencode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    def _options(
        self,
        batch_size: int | None,
        max_length: int | None,
        return_dense: bool,
        return_sparse: bool,
        return_colbert_vecs: bool,
        batch_tokens: int | None,
    ) -> dict[str, Any]:
        """The checks the local encoder makes before encoding, with its error types and messages."""
        check_positive_int(batch_size, "batch_size", optional=True)
        check_positive_int(batch_tokens, "batch_tokens", minimum=2, optional=True)
        length = check_positive_int(self.passage_max_length if max_length is None else max_length, "max_length", minimum=2)
        if length > self.max_length:
            raise InputValueError(f"max_length={length} exceeds the model's limit of {self.max_length} tokens")
        if (return_sparse or return_colbert_vecs) and self.dense_only:
            raise DenseOnlyError(f"{self.model} is served dense_only: sparse and ColBERT outputs need the heads")
        if not (return_dense or return_sparse or return_colbert_vecs):
            raise InputValueError("nothing to return: set return_dense, return_sparse or return_colbert_vecs")
        return {
            "return_dense": bool(return_dense),
            "return_sparse": bool(return_sparse),
            "return_colbert_vecs": bool(return_colbert_vecs),
            "max_length": length,
            "colbert_dtype": self.colbert_dtype,
        }

    def _bodies(self, texts: list[str], options: dict[str, Any]) -> Iterator[tuple[bytes, int]]:
        """Request bodies of at most ``max_request_texts`` texts and ``max_request_bytes`` each."""
        head = json.dumps(options)[:-1].encode() + b', "texts": ['
        budget = self.max_request_bytes - len(head) - 2
        pieces: list[bytes] = []
        size = 0
        for i, text in enumerate(texts):
            try:
                piece = json.dumps(text, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputValueError(f"texts[{i}] is not valid Unicode ({exc.reason} at position {exc.start})") from None
            if pieces and (len(pieces) >= self.max_request_texts or size + len(piece) + 1 > budget):
                yield head + b",".join(pieces) + b"]}", len(pieces)
                pieces, size = [], 0
            pieces.append(piece)
            size += len(piece) + 1
        if pieces:
            yield head + b",".join(pieces) + b"]}", len(pieces)

    def _decode(self, body: Any, n: int) -> M3Output:
        try:
            out = decode_output(body["data"], dim=self.dim, vocab_size=self.vocab_size, colbert_dim=self.colbert_dim)
        except (KeyError, TypeError, InputValueError) as exc:
            raise RemoteError(f"m3rag serve at {self.url} sent a malformed encode answer: {exc}", 200) from None
        if len(out) != n:
            raise RemoteError(f"m3rag serve at {self.url} answered {len(out)} texts for {n}", 200)
        return out

    def _finish(self, parts: list[M3Output], options: dict[str, Any]) -> M3Output:
        if not parts:
            return empty_output(
                dim=self.dim,
                vocab_size=self.vocab_size,
                colbert_dim=self.colbert_dim,
                dense=options["return_dense"],
                sparse=options["return_sparse"],
                colbert=options["return_colbert_vecs"],
            )
        out = concat_outputs(parts)
        warn_truncated(out.truncated, options["max_length"])
        return out

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, content: bytes | None = None) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, content=content)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise self._unreachable(exc) from exc
                time.sleep(self._delay(attempt))
            except httpx.HTTPError as exc:
                raise self._broken(exc) from exc
            else:
                return self._result(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _arequest(self, method: str, path: str, content: bytes | None = None) -> Any:
        client = self._aclient()
        for attempt in range(self.retries + 1):
            try:
                response = await client.request(method, path, content=content)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise self._unreachable(exc) from exc
                await asyncio.sleep(self._delay(attempt))
            except httpx.HTTPError as exc:
                raise self._broken(exc) from exc
            else:
                return self._result(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _aclient(self) -> httpx.AsyncClient:
        """The pooled async client of the running event loop (an httpx async pool is bound to one loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for old in [lp for lp in self._aclients if lp.is_closed()]:
                del self._aclients[old]  # its connections died with its loop
            client = self._aclients.get(loop)
            if client is None:
                client = self._aclients[loop] = httpx.AsyncClient(**self._httpx_options)
            return client

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * 2**attempt * (1 + 0.25 * random.random()))

    def _unreachable(self, exc: Exception) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"m3rag serve at {self.url} is unreachable after {self.retries + 1} attempts: {exc or type(exc).__name__}", self.url
        )

    def _broken(self, exc: Exception) -> ServiceUnavailableError:
        if isinstance(exc, httpx.TimeoutException):
            return ServiceUnavailableError(f"m3rag serve at {self.url} did not answer in time ({type(exc).__name__})", self.url)
        return ServiceUnavailableError(f"m3rag serve at {self.url} stopped answering mid-request ({type(exc).__name__}: {exc})", self.url)

    def _result(self, response: httpx.Response) -> Any:
        served = response.headers.get(FINGERPRINT_HEADER)
        if served and self.fingerprint and served != self.fingerprint:
            raise ModelMismatchError(
                f"m3rag serve at {self.url} now serves other weights (fingerprint {served}); this encoder was bound to {self.fingerprint}: "
                "create a new RemoteM3Encoder (and check your indexes)"
            )
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise RemoteError(
                    f"{self.url}{response.request.url.path} answered {response.status_code} with a body that is not JSON",
                    response.status_code,
                ) from None
        message, kind = response.text[:500] or response.reason_phrase, ""
        try:
            error = response.json()["error"]
            message, kind = str(error["message"]), str(error.get("type", ""))
        except (ValueError, KeyError, TypeError):
            pass
        if response.status_code == 400 and kind in _INPUT_ERRORS:
            raise _INPUT_ERRORS[kind](message)
        retry = response.headers.get("retry-after")
        hint = f"; retry after {retry} s" if retry else ""
        raise RemoteError(
            f"m3rag serve at {self.url}{response.request.url.path}: HTTP {response.status_code}: {message}{hint}", response.status_code
        )
