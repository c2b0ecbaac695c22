"""The local store (``store.LocalStore``): faiss, inverted CSR/CSC and ColBERT segments in memory;
checksummed, locked snapshots on disk (``snapshot``). ``m3rag.stores.LocalStore`` is the public name."""
