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
        Flat: the exact top ``k`` by the float64 inner product, ties to the lower row, whatever the
        number of queries per call (:meth:`_flat_search`). HNSW: faiss's approximate search.
        """
        if self.kind == "flat":
            return self._flat_search(np.ascontiguousarray(queries, dtype=np.float32), k, allowed)
        bits = selector = None
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))  # type: ignore[attr-defined]
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
            params.sel = selector  # SWIG keeps no reference: `selector` and `bits` live until the search returns
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
        del bits, selector  # the selector reads them during search only
        return scores, rows

    def _stored(self) -> np.ndarray:
        """A zero-copy ``float32 [n, dim]`` view of the flat index's vectors (valid until the next add)."""
        n = len(self)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        view: np.ndarray = faiss.rev_swig_ptr(self.index.get_xb(), n * self.dim)  # type: ignore[attr-defined]
        return view.reshape(n, self.dim)

    def _flat_search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact flat search with one GEMM per block of documents for all queries (torch's BLAS on
        a view of faiss's own vectors: no copy, and no faiss setting touched; faiss itself scans
        query by query below its global ``distance_compute_blas_threshold`` of 20 queries).

        float32 scores pick, per query, every row within the float32 rounding bound ``eps`` of the
        k-th best; those few are rescored in float64 and ranked (score, then row). The answer is
        therefore the exact top ``k``, identical for a query alone or in any batch.
        """
        import torch

        m, n = len(queries), len(self)
        scores = np.full((m, k), -np.finfo(np.float32).max, dtype=np.float32)
        rows = np.full((m, k), -1, dtype=np.int64)
        if m == 0 or n == 0 or k <= 0:
            return scores, rows
        stored = self._stored()
        mask = None if allowed is None else torch.from_numpy(np.ascontiguousarray(~allowed[:n]))
        q = torch.from_numpy(queries)
        # |float32 dot - exact| <= dim * 2^-24 * |q| * |x| (plus the sum's own rounding): a safe margin
        q_norm = np.linalg.norm(queries.astype(np.float64), axis=1)
        x_norm = self._max_norm(stored)
        eps = (2.0 * (self.dim + 2) * 2.0**-24 * q_norm * x_norm + 1e-30).astype(np.float32)
        block = max(1024, (1 << 22) // max(m, 1))  # [m, block] float32 scores stay ~16 MB
        found: list[list[np.ndarray]] = [[] for _ in range(m)]
        for start in range(0, n, block):
            part = torch.mm(q, torch.from_numpy(stored[start : start + block]).T)  # [m, B]
            if mask is not None:
                part.masked_fill_(mask[start : start + block][None, :], float("-inf"))
            kth = part.topk(min(k, part.shape[1]), dim=1, sorted=False).values.min(dim=1).values
            # a row more than 2 eps below the block's k-th has k rows certainly better than it
            near = ((part >= (kth - torch.from_numpy(2 * eps))[:, None]) & (part > float("-inf"))).numpy()
            for i in range(m):
                found[i].append(np.flatnonzero(near[i]) + start)
        for i in range(m):
            cand = np.concatenate(found[i])
            if len(cand) == 0:
                continue
            exact = stored[cand].astype(np.float64) @ queries[i].astype(np.float64)
            order = np.lexsort((cand, -exact))[:k]
            scores[i, : len(order)] = exact[order]
            rows[i, : len(order)] = cand[order]
        return scores, rows

    def _max_norm(self, stored: np.ndarray) -> float:
        """The largest row norm (cached per row count: rows are only ever appended)."""
        done, peak = getattr(self, "_norm_cache", (0, 0.0))
        if done != len(stored):
            for start in range(done, len(stored), 1 << 16):
                part = stored[start : start + (1 << 16)]
                peak = max(peak, float(np.sqrt(np.einsum("ij,ij->i", part, part).max())))
            self._norm_cache: tuple[int, float] = (len(stored), peak)
        return peak

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The stored ``float32 [len(rows), dim]`` vectors of ``rows``."""
        if len(rows) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))  # type: ignore[no-any-return]

    def all_vectors(self) -> np.ndarray:
        return self.index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), dtype=np.float32)

    def keep(self, rows: np.ndarray) -> DenseStore:
        """A new store holding only ``rows``, in that order."""
        store = self._empty_like()
        store.add(self.vectors(rows))
        return store

    def serialized(self) -> np.ndarray:
        """The HNSW graph and vectors in faiss's format (``uint8``); flat stores save their vectors."""
        return faiss.serialize_index(self.index)

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
            raise ValueError(
                f"it holds a faiss {type(index).__name__} (metric {index.metric_type}), not the {expected.__name__} of a {kind!r} index"
            )
        if index.d != dim:
            raise ValueError(f"it has dimension {index.d}, expected {dim}")
        store.index = index
        return store
