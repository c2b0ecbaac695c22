"""What every component needs of an M3 encoder, local or remote."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["M3EncoderLike"]


@runtime_checkable
class M3EncoderLike(Protocol):
    """The surface :class:`~m3rag.M3Index`, :func:`~m3rag.rerank` and the framework adapters use:
    an :class:`~m3rag.M3Encoder` in this process, or a remote one served by ``m3rag serve``."""

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

    def encode(self, sentences: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...

    async def aencode(self, sentences: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...

    def encode_queries(self, queries: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...

    def encode_corpus(self, corpus: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...

    async def aencode_queries(self, queries: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...

    async def aencode_corpus(self, corpus: Any, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any: ...
