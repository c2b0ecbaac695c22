"""LangChain integration: dense and sparse embeddings, a retriever over M3Index and a reranker.

Install with ``pip install "m3rag[langchain]"``. Every class takes ``model_name`` (resolved through
the shared encoder, so all of them load the weights once) or an ``encoder=`` instance.
"""

from m3rag.langchain.embeddings import M3Embeddings
from m3rag.langchain.reranker import M3Reranker
from m3rag.langchain.retriever import M3Retriever, hit_to_document
from m3rag.langchain.sparse_embeddings import M3SparseEmbeddings, SparseVector

__all__ = ["M3Embeddings", "M3Reranker", "M3Retriever", "M3SparseEmbeddings", "SparseVector", "hit_to_document"]
