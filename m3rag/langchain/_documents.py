"""What the LangChain document compressors share: input checks and scored copies of documents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document

from m3rag.errors import InputTypeError
from m3rag.reranking import Reranked
from m3rag.validation import check_positive_int, check_str

__all__ = ["check_documents", "with_scores"]


def check_documents(documents: Sequence[Document], query: str, top_n: int | None) -> list[Document]:
    """``documents`` as a list, after checking them, the query and ``top_n``."""
    check_str(query, "query")
    check_positive_int(top_n, "top_n", optional=True)
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document) or not isinstance(doc.page_content, str):
            raise InputTypeError(f"documents[{i}] is {type(doc).__name__}, not a Document with page_content")
    return docs


def with_scores(docs: list[Document], ranked: list[Reranked], scores_key: str | None = None) -> list[Document]:
    """Copies of the ranked documents, in rank order, with ``metadata["relevance_score"]`` (and the
    per-mode scores under ``scores_key``); the inputs are left untouched."""
    out = []
    for r in ranked:
        extra: dict[str, Any] = {"relevance_score": r.score}
        if scores_key is not None:
            extra[scores_key] = r.scores
        out.append(docs[r.index].model_copy(update={"metadata": {**docs[r.index].metadata, **extra}}))
    return out
