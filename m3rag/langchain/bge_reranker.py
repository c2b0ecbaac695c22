"""A cross-encoder (bge-reranker-v2-m3, bge-reranker-base/large) as a LangChain document compressor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document

from m3rag.langchain._documents import check_documents, with_scores
from m3rag.langchain._encoder_field import RerankerFields
from m3rag.reranking import acrossencoder_rank, crossencoder_rank

__all__ = ["BGEReranker"]


class BGEReranker(RerankerFields, BaseDocumentCompressor):
    """Reorder documents by a BGE cross-encoder's relevance score and keep the ``top_n``, as
    ``CrossEncoderReranker`` does, on m3rag's shared :class:`m3rag.BGEReranker` (in ``encoder``).

    ``metadata["relevance_score"]`` (on copies of the documents) is the pair's sigmoid, in
    ``[0, 1]``, as sentence-transformers' one-label cross-encoders give it (``normalize=False``:
    the raw logit, FlagReranker's default). The model is ``model_name`` (default
    ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``) or ``encoder``; ``model_kwargs``
    ``device`` and ``dtype`` are understood. Pairs are cut at ``max_length`` tokens as FlagReranker
    cuts them. It can also be :class:`~m3rag.langchain.M3Retriever`'s ``reranker`` (scoring with
    these settings).

    Example:
        .. code-block:: python

            from m3rag.langchain import BGEReranker, M3Retriever

            retriever = M3Retriever.from_texts(texts, model_name="BAAI/bge-m3", k=20)
            reranker = BGEReranker(model_name="BAAI/bge-reranker-v2-m3", top_n=3)
            docs = reranker.compress_documents(retriever.invoke(query), query)
    """

    top_n: int | None = 3
    """How many documents to keep (``None``: all, reordered)."""
    normalize: bool = True
    """Scores as the logit's sigmoid (``False``: the raw logit)."""
    max_length: int = 512
    """Token limit of one (query, document) pair, specials included."""
    batch_size: int | None = None
    """Maximum pairs per forward pass (default the reranker's; batches also respect its token budget)."""

    def compress_documents(self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None) -> Sequence[Document]:
        docs = check_documents(documents, query, self.top_n)
        return with_scores(docs, crossencoder_rank(self.instance, query, [d.page_content for d in docs], **self._options()))

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        docs = check_documents(documents, query, self.top_n)
        return with_scores(docs, await acrossencoder_rank(self.instance, query, [d.page_content for d in docs], **self._options()))

    def _options(self) -> dict[str, Any]:
        return dict(top_n=self.top_n, normalize=self.normalize, max_length=self.max_length, batch_size=self.batch_size)

    # ------------------------------------------------------------------ as the retriever's cross-encoder
    @property
    def name(self) -> str:
        """The model's name (``model_name``)."""
        return self.model_name

    def compute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        """:meth:`m3rag.BGEReranker.compute_score` with this compressor's settings as defaults, so it
        can be :class:`~m3rag.langchain.M3Retriever`'s ``reranker`` and score as it does here."""
        return self.instance.compute_score(sentence_pairs, *self._settings(batch_size, max_length, normalize))

    async def acompute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        """:meth:`compute_score` for asyncio."""
        return await self.instance.acompute_score(sentence_pairs, *self._settings(batch_size, max_length, normalize))

    def _settings(self, batch_size: int | None, max_length: int | None, normalize: bool | None) -> tuple[int | None, int, bool]:
        return (
            self.batch_size if batch_size is None else batch_size,
            self.max_length if max_length is None else max_length,
            self.normalize if normalize is None else normalize,
        )
