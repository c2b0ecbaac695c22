"""M3Index: dense (faiss), sparse (inverted CSR) and ColBERT retrieval with fusion, reranking and safe persistence."""

from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.index import Fusion, M3Index, SearchMode

__all__ = ["M3Index", "SearchHit", "IndexedDocument", "SearchMode", "Fusion"]
