"""M3Index: search plans (dense, sparse, hybrid; weighted or RRF fusion; ColBERT or hybrid rerank)
executed by a store: local (faiss + inverted CSR + ColBERT segments), Qdrant or Milvus."""

from m3rag.index.cross_encoder import RERANKER_SCORE
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.index import M3Index
from m3rag.index.plan import Fusion, SearchMode, SearchPlan

__all__ = ["RERANKER_SCORE", "Fusion", "IndexedDocument", "M3Index", "SearchHit", "SearchMode", "SearchPlan"]
