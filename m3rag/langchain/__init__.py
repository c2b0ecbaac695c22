"""LangChain integration: dense (BGE-M3 and BGE) and sparse embeddings, a retriever over M3Index,
and rerankers (M3's ColBERT/hybrid score, and the BGE cross-encoders).

Install with ``pip install "m3rag[langchain]"``. Every class takes ``model_name`` (resolved through
the shared model of its kind, so classes naming the same model load the weights once) or an
``encoder=`` instance.
"""

from m3rag._extras import require_extra

require_extra("langchain_core", "langchain", "m3rag.langchain")

from m3rag.langchain.bge_embeddings import BGEEmbeddings  # noqa: E402
from m3rag.langchain.bge_reranker import BGEReranker  # noqa: E402
from m3rag.langchain.embeddings import M3Embeddings  # noqa: E402
from m3rag.langchain.reranker import M3Reranker  # noqa: E402
from m3rag.langchain.retriever import M3Retriever, hit_to_document  # noqa: E402
from m3rag.langchain.sparse_embeddings import M3SparseEmbeddings, SparseVector  # noqa: E402

__all__ = [
    "BGEEmbeddings",
    "BGEReranker",
    "M3Embeddings",
    "M3Reranker",
    "M3Retriever",
    "M3SparseEmbeddings",
    "SparseVector",
    "hit_to_document",
]
