"""The local store: faiss, inverted CSR/CSC and ColBERT segments in memory; checksummed snapshots on disk."""

from m3rag.stores.local.store import LocalStore

__all__ = ["LocalStore"]
