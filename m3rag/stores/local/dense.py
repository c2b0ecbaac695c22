"""Dense vectors in a faiss index (inner product on L2-normalised vectors = cosine)."""

from __future__ import annotations

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
        self.dim, self.kind = dim, kind
        self.hnsw_m, self.ef_construction, self.ef_search = hnsw_m, ef_construction, ef_search
        self.index = self._new_index()

    def _new_index(self) -> faiss.Index:
        if self.kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    def _empty_like(self) -> DenseStore:
        return DenseStore(self.dim, self.kind, hnsw_m=self.hnsw_m, ef_construction=self.ef_construction, ef_search=self.ef_search)

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
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))  # type: ignore[no-any-return]

    def all_vectors(self) -> np.ndarray:
        return self.index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), dtype=np.float32)  # type: ignore[no-any-return]

    def keep(self, rows: np.ndarray) -> DenseStore:
        """A new store holding only ``rows``, in that order."""
        store = self._empty_like()
        store.add(self.vectors(rows))
        return store

    def serialized(self) -> np.ndarray:
        """The HNSW graph and vectors in faiss's format (``uint8``); flat stores save their vectors."""
        return faiss.serialize_index(self.index)  # type: ignore[no-any-return]

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, **settings: object) -> DenseStore:
        store = cls(vectors.shape[1], "flat", **settings)  # type: ignore[arg-type]
        store.add(vectors)
        return store

    @classmethod
    def from_serialized(cls, data: np.ndarray, kind: DenseKind, dim: int, **settings: object) -> DenseStore:
        """A store from faiss bytes; ``ValueError`` if they hold another index type, metric or size."""
        store = cls(dim, kind, **settings)  # type: ignore[arg-type]
        index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
        expected = faiss.IndexHNSWFlat if kind == "hnsw" else faiss.IndexFlatIP
        if type(index) is not expected or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"it holds a faiss {type(index).__name__} (metric {index.metric_type}), not the {expected.__name__} of a {kind!r} index")
        if index.d != dim:
            raise ValueError(f"it has dimension {index.d}, expected {dim}")
        store.index = index
        return store
