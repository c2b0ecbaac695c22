"""LlamaIndex integration: dense and sparse embeddings, a reranking node postprocessor and a retriever.

Install with ``pip install "m3rag[llama-index]"``. Every class takes ``model_name`` (resolved
through the shared encoder, which the LangChain classes use too) or an ``encoder=`` instance.
"""

from m3rag.llama_index.embeddings import M3Embedding, M3SparseEmbedding
from m3rag.llama_index.reranker import M3Reranker
from m3rag.llama_index.retriever import M3Retriever, hit_to_node

__all__ = ["M3Embedding", "M3Reranker", "M3Retriever", "M3SparseEmbedding", "hit_to_node"]
