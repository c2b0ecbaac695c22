"""Dense and sparse BGE-M3 embeddings for LlamaIndex."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.base.embeddings.base_sparse import BaseSparseEmbedding, SparseEmbedding
from pydantic import Field, PrivateAttr

from m3rag.encoder.protocol import M3EncoderLike
from m3rag.llama_index._shared import SharedEncoder
from m3rag.scoring import lexical_matching_score
from m3rag.validation import check_str, check_texts

__all__ = ["M3Embedding", "M3SparseEmbedding"]


class M3Embedding(SharedEncoder, BaseEmbedding):
    """BGE-M3 dense embeddings (L2-normalised [CLS] vectors) on the shared encoder.

    Works as ``Settings.embed_model`` and in ``VectorStoreIndex``; ``embed_batch_size`` bounds the
    texts per forward pass. Async methods use :meth:`M3Encoder.aencode` (the event loop never
    waits on the model; concurrent calls share forward passes when coalescing is on).

    Example:
        .. code-block:: python

            from llama_index.core import Settings
            from m3rag.llama_index import M3Embedding

            Settings.embed_model = M3Embedding(model_name="BAAI/bge-m3")
    """

    max_length: int = Field(default=8192, description="Token limit for texts (longer ones are truncated).")
    query_max_length: int = Field(default=512, description="Token limit for queries.")
    embed_batch_size: int = Field(default=32, gt=0, description="Texts per forward pass.")
    _encoder: M3EncoderLike = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: M3EncoderLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name, encoder=encoder, device=device, dtype=dtype, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "M3Embedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        check_str(query, "query")
        return _row(self._encoder.encode(query, 1, self.query_max_length).dense_vecs)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([check_str(text, "text")])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        texts, _ = check_texts(texts)
        return _rows(self._encoder.encode(texts, self.embed_batch_size, self.max_length).dense)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        check_str(query, "query")
        return _row((await self._encoder.aencode(query, 1, self.query_max_length)).dense_vecs)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([check_str(text, "text")]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        texts, _ = check_texts(texts)
        return _rows((await self._encoder.aencode(texts, self.embed_batch_size, self.max_length)).dense)


class M3SparseEmbedding(SharedEncoder, BaseSparseEmbedding):
    """BGE-M3 lexical weights: ``{token_id: weight}``, equal to the encoder's ``lexical_weights``.

    :meth:`similarity` is M3's lexical score, a dot product (LlamaIndex's default sparse
    similarity is a cosine). :meth:`sparse_doc_fn` / :meth:`sparse_query_fn` have the shape
    llama-index-vector-stores-qdrant takes (``texts -> (indices, values)``); Qdrant's sparse score
    is a dot product too.

    Example:
        .. code-block:: python

            from llama_index.vector_stores.qdrant import QdrantVectorStore
            from m3rag.llama_index import M3SparseEmbedding

            sparse = M3SparseEmbedding(model_name="BAAI/bge-m3")
            store = QdrantVectorStore("docs", client=client, enable_hybrid=True,
                                      sparse_doc_fn=sparse.sparse_doc_fn, sparse_query_fn=sparse.sparse_query_fn)
    """

    max_length: int = Field(default=8192, description="Token limit for texts.")
    query_max_length: int = Field(default=512, description="Token limit for queries.")
    embed_batch_size: int = Field(default=32, gt=0, description="Texts per forward pass.")
    _encoder: M3EncoderLike = PrivateAttr()

    def __init__(
        self,
        model_name: str | None = None,
        *,
        encoder: M3EncoderLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model_name, encoder=encoder, device=device, dtype=dtype, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "M3SparseEmbedding"

    def _get_query_embedding(self, query: str) -> SparseEmbedding:
        check_str(query, "query")
        return _weights(self._encoder.encode(query, 1, self.query_max_length, return_dense=False, return_sparse=True).lexical_weights)

    def _get_text_embedding(self, text: str) -> SparseEmbedding:
        return self._get_text_embeddings([check_str(text, "text")])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        texts, _ = check_texts(texts)
        out = self._encoder.encode(texts, self.embed_batch_size, self.max_length, return_dense=False, return_sparse=True)
        return _weights_list(out.lexical_weights)

    async def _aget_query_embedding(self, query: str) -> SparseEmbedding:
        check_str(query, "query")
        item = await self._encoder.aencode(query, 1, self.query_max_length, return_dense=False, return_sparse=True)
        return _weights(item.lexical_weights)

    async def _aget_text_embedding(self, text: str) -> SparseEmbedding:
        return (await self._aget_text_embeddings([check_str(text, "text")]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[SparseEmbedding]:
        texts, _ = check_texts(texts)
        out = await self._encoder.aencode(texts, self.embed_batch_size, self.max_length, return_dense=False, return_sparse=True)
        return _weights_list(out.lexical_weights)

    def similarity(self, embedding1: SparseEmbedding, embedding2: SparseEmbedding, **kwargs: Any) -> float:
        """M3's lexical score: the dot product over shared token ids."""
        score = lexical_matching_score(cast(Mapping[int | str, float], embedding1), cast(Mapping[int | str, float], embedding2))
        return float(score)

    def sparse_doc_fn(self, texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        """Documents' lexical weights as ``(indices, values)`` lists, for Qdrant's ``sparse_doc_fn``."""
        weights = self._get_text_embeddings(texts)
        return [list(w) for w in weights], [list(w.values()) for w in weights]

    def sparse_query_fn(self, texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        """Queries' lexical weights as ``(indices, values)`` lists, for Qdrant's ``sparse_query_fn``."""
        texts, _ = check_texts(texts)
        out = self._encoder.encode(texts, self.embed_batch_size, self.query_max_length, return_dense=False, return_sparse=True)
        weights = out.lexical_weights or []
        return [list(w) for w in weights], [list(w.values()) for w in weights]


def _row(vector: Any) -> list[float]:
    """``float32 [d]`` as a list of Python floats."""
    row: list[float] = vector.tolist()
    return row


def _rows(vectors: Any) -> list[list[float]]:
    """``float32 [n, d]`` as lists of Python floats."""
    rows: list[list[float]] = vectors.tolist()
    return rows


def _weights(weights: dict[int, float] | None) -> SparseEmbedding:
    """A text's lexical weights (always computed here: the sparse head was asked for)."""
    if weights is None:
        raise RuntimeError("the encoder returned no lexical weights")
    return weights


def _weights_list(weights: list[dict[int, float]] | None) -> list[SparseEmbedding]:
    if weights is None:
        raise RuntimeError("the encoder returned no lexical weights")
    return list(weights)
