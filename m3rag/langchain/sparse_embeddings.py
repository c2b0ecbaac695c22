"""BGE-M3 lexical weights as sparse vectors for LangChain vector stores (Qdrant, Milvus)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import BaseModel

from m3rag.langchain._encoder_field import EncoderFields
from m3rag.validation import check_str, check_texts

__all__ = ["M3SparseEmbeddings", "SparseVector"]


class SparseVector(BaseModel):
    """Token ids and their weights (ids unique, ascending), the shape langchain-qdrant reads."""

    indices: list[int]
    values: list[float]


def _vector(weights: dict[int, float]) -> SparseVector:
    return SparseVector(indices=list(weights), values=list(weights.values()))


class M3SparseEmbeddings(EncoderFields):
    """BGE-M3 lexical weights (token id -> weight) as sparse vectors.

    Implements langchain-qdrant's ``SparseEmbeddings`` interface, so it can be the
    ``sparse_embedding`` of ``QdrantVectorStore`` (``RetrievalMode.SPARSE`` or ``HYBRID``; Qdrant's
    sparse score is a dot product, which is M3's lexical score). :meth:`as_milvus` gives the
    ``dict[int, float]`` form that langchain-milvus takes.

    Example:
        .. code-block:: python

            from langchain_qdrant import QdrantVectorStore, RetrievalMode
            from m3rag.langchain import M3Embeddings, M3SparseEmbeddings

            store = QdrantVectorStore.from_texts(
                texts, embedding=M3Embeddings(), sparse_embedding=M3SparseEmbeddings(),
                retrieval_mode=RetrievalMode.HYBRID, location=":memory:", collection_name="docs",
            )
    """

    batch_size: int = 32
    max_length: int = 8192
    query_max_length: int = 512

    ENCODE_KWARGS: ClassVar[Mapping[str, str]] = MappingProxyType({"batch_size": "batch_size"})

    def embed_documents_dict(self, texts: list[str]) -> list[dict[int, float]]:
        """Lexical weights of documents as ``{token_id: weight}``."""
        texts, _ = check_texts(texts)
        return _lexical_list(
            self.m3.encode(texts, self.batch_size, self.max_length, return_dense=False, return_sparse=True).lexical_weights
        )

    def embed_query_dict(self, text: str) -> dict[int, float]:
        check_str(text, "text")
        return _lexical(self.m3.encode(text, 1, self.query_max_length, return_dense=False, return_sparse=True).lexical_weights)

    def embed_documents(self, texts: list[str]) -> list[SparseVector]:
        return [_vector(w) for w in self.embed_documents_dict(texts)]

    def embed_query(self, text: str) -> SparseVector:
        return _vector(self.embed_query_dict(text))

    async def aembed_documents(self, texts: list[str]) -> list[SparseVector]:
        texts, _ = check_texts(texts)
        out = await self.m3.aencode(texts, self.batch_size, self.max_length, return_dense=False, return_sparse=True)
        return [_vector(w) for w in _lexical_list(out.lexical_weights)]

    async def aembed_query(self, text: str) -> SparseVector:
        check_str(text, "text")
        item = await self.m3.aencode(text, 1, self.query_max_length, return_dense=False, return_sparse=True)
        return _vector(_lexical(item.lexical_weights))

    def as_milvus(self) -> Any:
        """This model as a langchain-milvus ``BaseSparseEmbedding`` (``dict[int, float]`` outputs)."""
        base: Any = importlib.import_module("langchain_milvus.utils.sparse").BaseSparseEmbedding  # the optional langchain-milvus
        outer = self

        class M3MilvusSparseEmbedding(base):  # type: ignore[misc]  # a class from an optional package
            def embed_query(self, query: str) -> dict[int, float]:
                return outer.embed_query_dict(query)

            def embed_documents(self, texts: list[str]) -> list[dict[int, float]]:
                return outer.embed_documents_dict(texts)

        return M3MilvusSparseEmbedding()


def _lexical(weights: dict[int, float] | None) -> dict[int, float]:
    if weights is None:  # the sparse head was asked for
        raise RuntimeError("the encoder returned no lexical weights")
    return weights


def _lexical_list(weights: list[dict[int, float]] | None) -> list[dict[int, float]]:
    if weights is None:
        raise RuntimeError("the encoder returned no lexical weights")
    return weights
