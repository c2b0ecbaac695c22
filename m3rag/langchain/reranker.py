"""Rerank any retriever's documents by ColBERT or M3's weighted dense + sparse + ColBERT score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from m3rag.langchain._documents import check_documents, with_scores
from m3rag.langchain._encoder_field import EncoderFields
from m3rag.reranking import arerank, rerank

__all__ = ["M3Reranker"]


class M3Reranker(EncoderFields, BaseDocumentCompressor):
    """A document compressor that reorders documents by BGE-M3 relevance and keeps the ``top_n``.

    ``mode="colbert"``: the ColBERT (late-interaction) score; ``"hybrid"``: ``(w_d*dense +
    w_s*sparse + w_c*colbert) / (w_d + w_s + w_c)`` with ``weights`` (default 1, 0.3, 1). Writes
    ``metadata["relevance_score"]`` (and ``m3_scores`` per mode) on copies of the documents.

    Example:
        .. code-block:: python

            from m3rag.langchain import M3Reranker

            reranker = M3Reranker(model_name="BAAI/bge-m3", top_n=3)
            docs = reranker.compress_documents(any_retriever.invoke(query), query)
    """

    mode: Literal["colbert", "hybrid"] = "colbert"
    weights: list[float] | dict[str, float] | None = None
    top_n: int | None = 3
    """How many documents to keep (``None``: all, reordered)."""
    batch_size: int = 32
    max_length: int = 8192
    query_max_length: int = 512

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None) -> Sequence[Document]:
        docs = check_documents(documents, query, self.top_n)
        return with_scores(docs, rerank(self.m3, query, [d.page_content for d in docs], **self._options()), "m3_scores")

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, query, self.top_n)
        return with_scores(docs, await arerank(self.m3, query, [d.page_content for d in docs], **self._options()), "m3_scores")

    def _options(self) -> dict[str, Any]:
        return dict(
            mode=self.mode,
            weights=self.weights,
            top_n=self.top_n,
            max_query_length=self.query_max_length,
            max_passage_length=self.max_length,
            batch_size=self.batch_size,
        )
