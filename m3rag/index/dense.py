"""Dense vectors in a faiss index (inner product on L2-normalised vectors = cosine)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import faiss
import numpy as np

__all__ = ["DenseKind", "DenseStore"]

DenseKind = Literal["flat", "hnsw"]


class DenseStore:
    """Row ``i`` of the index is the ``i``-th vector added; rows are never reordered.

    ``"flat"`` (``IndexFlatIP``) is exact. ``"hnsw"`` (``IndexHNSWFlat``, inner product) is
    approximate: faster on large corpora, recall set by ``ef_search`` (higher: better recall,
    slower). Both store the vectors, so :meth:`vectors` returns them exactly.
    """

    def __init__(self, dim: int, kind: DenseKind = "flat", *, hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128) -> None:
        self.dim, self.kind, self.ef_search = dim, kind, ef_search
        self._hnsw_m, self._ef_construction = hnsw_m, ef_construction
        self.index = self._new_index()

    def _new_index(self) -> faiss.Index:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self._hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self._ef_construction
        return index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append ``float32 [n, dim]`` rows."""
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows per query among ``allowed`` (``bool [len]``, ``None`` = all).

        Returns scores ``float32 [m, k]`` and rows ``int64 [m, k]`` (``-1`` where fewer exist).
        """
        params = None
        bits = None
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k)) if self.kind == "hnsw" else faiss.SearchParameters(sel=selector)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        del bits  # the selector reads it during search only
        return scores, rows

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored ``float32 [len(rows), dim]`` vectors of ``rows``."""
        if len(rows) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def keep(self, rows: np.ndarray) -> DenseStore:
        """A new store holding only ``rows``, in that order."""
        store = DenseStore(self.dim, self.kind, hnsw_m=self._hnsw_m, ef_construction=self._ef_construction, ef_search=self.ef_search)
        store.add(self.vectors(rows))
        return store

    def write(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def read(cls, path: Path, kind: DenseKind, dim: int, ef_search: int) -> DenseStore:
        store = cls(dim, kind, ef_search=ef_search)
        store.index = faiss.read_index(str(path))
        if store.index.d != dim:
            raise ValueError(f"faiss index has dimension {store.index.d}, expected {dim}")
        return store
