"""LlamaIndex integration: dense (BGE-M3 and BGE) and sparse embeddings, reranking node
postprocessors (M3's ColBERT/hybrid score, and the BGE cross-encoders) and a retriever.

Install with ``pip install "m3rag[llama-index]"``. Every class takes ``model_name`` (resolved
through the shared model of its kind, which the LangChain classes use too) or an ``encoder=`` instance.
"""

from m3rag._extras import require_extra

require_extra("llama_index.core", "llama-index", "m3rag.llama_index")

from m3rag.llama_index.bge_embedding import BGEEmbedding  # noqa: E402
from m3rag.llama_index.bge_reranker import BGEReranker  # noqa: E402
from m3rag.llama_index.embeddings import M3Embedding, M3SparseEmbedding  # noqa: E402
from m3rag.llama_index.reranker import M3Reranker  # noqa: E402
from m3rag.llama_index.retriever import M3Retriever, hit_to_node  # noqa: E402

__all__ = ["BGEEmbedding", "BGEReranker", "M3Embedding", "M3Reranker", "M3Retriever", "M3SparseEmbedding", "hit_to_node"]
