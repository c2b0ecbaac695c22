"""Dense, sparse or hybrid retrieval over an M3Index, with optional ColBERT / hybrid reranking and
a cross-encoder stage. The retriever only translates: every rule is the index's."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, field_validator

from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
from m3rag.encoder.resolve import resolve_reranker
from m3rag.errors import InputTypeError
from m3rag.index import M3Index, SearchHit

__all__ = ["M3Retriever", "hit_to_document"]

_SEARCH_KEYS = ("k", "mode", "weights", "fusion", "rerank", "candidates", "filter", "reranker")


def hit_to_document(hit: SearchHit) -> Document:
    """A LangChain Document of a hit: final score in ``metadata["relevance_score"]``, each mode's
    score in ``metadata["m3_scores"]``."""
    metadata = {**hit.metadata, "relevance_score": hit.score, "m3_scores": dict(hit.scores)}
    return Document(page_content=hit.text, metadata=metadata, id=hit.id)


class M3Retriever(BaseRetriever):
    """Retrieve from an :class:`~m3rag.M3Index` by dense, sparse or hybrid search.

    Every search argument of :meth:`M3Index.search` can be set on the retriever and overridden per
    call (``retriever.invoke(query, k=3, filter={"lang": "en"})``). Scores land in
    ``Document.metadata`` (``relevance_score``, and ``m3_scores`` per mode). An empty or
    whitespace-only query returns no documents (the index's rule).

    ``reranker``: a cross-encoder stage after the first ``candidates`` hits (the model card's
    pipeline): a :class:`m3rag.BGEReranker`, a :class:`~m3rag.langchain.BGEReranker` or a reranker
    model name; the cross-encoder's score becomes ``relevance_score`` (``m3_scores["reranker"]``).

    Example:
        .. code-block:: python

            from m3rag.langchain import M3Retriever

            retriever = M3Retriever.from_texts(
                ["BGE M3 gives dense, sparse and ColBERT vectors.", "BM25 ranks by terms."],
                model_name="BAAI/bge-m3", k=1, mode="hybrid", reranker="BAAI/bge-reranker-v2-m3",
            )
            retriever.invoke("What does BGE M3 give?")
            retriever.save("my-index")  # later: M3Retriever.load("my-index")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    index: M3Index
    k: int = 4
    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    weights: list[float] | dict[str, float] | None = None
    fusion: Literal["weighted", "rrf"] = "weighted"
    rerank: Literal["colbert", "hybrid"] | None = None
    candidates: int | None = None
    filter: dict[str, Any] | None = None
    reranker: RerankerLike | None = None

    @field_validator("reranker", mode="before")
    @classmethod
    def _resolve_reranker(cls, value: Any) -> RerankerLike | None:
        return resolve_reranker(value)

    def _search_args(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """:meth:`M3Index.search`'s arguments for this call: the retriever's, overridden per call."""
        unknown = set(overrides) - set(_SEARCH_KEYS)
        if unknown:
            raise InputTypeError(f"unknown search arguments {sorted(unknown)}; use {', '.join(_SEARCH_KEYS)}")
        args = {key: overrides.get(key, getattr(self, key)) for key in _SEARCH_KEYS}
        args["reranker"] = resolve_reranker(args["reranker"])
        return args

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any) -> list[Document]:
        return [hit_to_document(hit) for hit in self.index.search(query, **self._search_args(kwargs))]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return [hit_to_document(hit) for hit in await self.index.asearch(query, **self._search_args(kwargs))]

    def add_documents(self, documents: Sequence[Document], *, upsert: bool = False) -> list[str]:
        """Add LangChain documents to the index; their ``id`` is kept when set."""
        texts, ids, metadatas = _unpack(documents)
        if any(i is None for i in ids):
            if not all(i is None for i in ids):
                raise InputTypeError("either every document has an id or none has")
            return self.index.add(texts, metadatas=metadatas, upsert=upsert)
        return self.index.add(texts, ids=ids, metadatas=metadatas, upsert=upsert)  # type: ignore[arg-type]

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        metadatas: Sequence[dict[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
        *,
        encoder: M3EncoderLike | None = None,
        model_name: str | None = None,
        index_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> M3Retriever:
        """Build a new index of ``texts`` (:meth:`M3Index.from_texts`, on the shared encoder of
        ``model_name``) and a retriever over it; ``index_kwargs`` go to :class:`~m3rag.M3Index`,
        ``kwargs`` to the retriever."""
        index = M3Index.from_texts(
            texts, encoder if encoder is not None else model_name, ids=ids, metadatas=metadatas, **(index_kwargs or {})
        )
        return cls(index=index, **kwargs)

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **kwargs: Any) -> M3Retriever:
        """:meth:`from_texts` for LangChain documents (``page_content``, ``metadata``, ``id``)."""
        texts, ids, metadatas = _unpack(documents)
        has_ids = all(i is not None for i in ids)
        return cls.from_texts(texts, metadatas, ids if has_ids else None, **kwargs)  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the index (atomically) to ``path``."""
        self.index.save(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, encoder: M3EncoderLike | None = None, model_name: str | None = None, **kwargs: Any
    ) -> M3Retriever:
        """A retriever over the index saved at ``path`` (:meth:`M3Index.load`): on ``encoder``, or
        the shared encoder of ``model_name``, or without either the model its manifest names."""
        return cls(index=M3Index.load(path, encoder if encoder is not None else model_name), **kwargs)


def _unpack(documents: Sequence[Document]) -> tuple[list[str], list[str | None], list[dict[str, Any]]]:
    given: object = documents  # callers may pass anything
    if isinstance(given, Document) or not isinstance(given, Sequence):
        raise InputTypeError(f"documents must be a sequence of Document, got {type(given).__name__}")
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document) or not isinstance(doc.page_content, str):
            raise InputTypeError(f"documents[{i}] is {type(doc).__name__}, not a Document with page_content")
    return [d.page_content for d in documents], [d.id for d in documents], [dict(d.metadata) for d in documents]
