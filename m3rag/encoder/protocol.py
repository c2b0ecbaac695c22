"""What every component needs of a model, local or remote: an M3 encoder, a cross-encoder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["M3EncoderLike", "RerankerLike"]


@runtime_checkable
class M3EncoderLike(Protocol):
    """The surface :class:`~m3rag.M3Index`, :func:`~m3rag.rerank` and the framework adapters use:
    an :class:`~m3rag.M3Encoder` in this process, or a remote one served by ``m3rag serve``.

    The encode methods take ``(sentences, batch_size=None, max_length=None, **options)`` with
    :meth:`M3Encoder.encode`'s options; they are declared as read-only callables so that the
    encoders' own precise (overloaded) signatures satisfy the protocol.
    """

    name: str
    dim: int
    colbert_dim: int | None
    vocab_size: int
    fingerprint: str
    query_max_length: int
    passage_max_length: int

    @property
    def dense_only(self) -> bool: ...

    @property
    def identity(self) -> dict[str, Any]: ...

    @property
    def encode(self) -> Callable[..., Any]: ...

    @property
    def aencode(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def encode_queries(self) -> Callable[..., Any]: ...

    @property
    def encode_corpus(self) -> Callable[..., Any]: ...

    @property
    def aencode_queries(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def aencode_corpus(self) -> Callable[..., Awaitable[Any]]: ...


@runtime_checkable
class RerankerLike(Protocol):
    """A cross-encoder as :meth:`M3Index.search` and the framework rerankers use it: a
    :class:`~m3rag.BGEReranker`, or anything scoring ``(query, passage)`` pairs the same way:
    ``compute_score(pairs, ...) -> list[float]`` (higher is more relevant) and its async twin."""

    name: str

    def compute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]: ...

    async def acompute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]: ...
