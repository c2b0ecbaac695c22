"""Lexical weights as an inverted index: a CSR matrix of documents x vocabulary, and its CSC twin."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["SparseStore"]


def _stack(chunks: list[sp.csr_array], vocab_size: int) -> sp.csr_array:
    if not chunks:
        return sp.csr_array((0, vocab_size), dtype=np.float32)
    if len(chunks) == 1:
        return chunks[0]
    return sp.csr_array(sp.vstack(chunks, format="csr"), dtype=np.float32)


def _scores(csc: sp.csc_array, queries: sp.csr_array) -> np.ndarray:
    """``[n_queries, n_docs]`` float64 dot products, reading only the postings of each query's
    tokens: one ``bincount`` over them per query (no sparse-matrix slicing, whose fixed costs
    dominate a query on a small index)."""
    n_docs = csc.shape[0]
    out = np.zeros((queries.shape[0], n_docs), dtype=np.float64)
    indptr, indices, data = csc.indptr, csc.indices, csc.data
    for i in range(queries.shape[0]):
        lo, hi = queries.indptr[i], queries.indptr[i + 1]
        tokens = queries.indices[lo:hi]
        starts, counts = indptr[tokens], indptr[tokens + 1] - indptr[tokens]
        total = int(counts.sum())
        if total == 0:
            continue
        heads = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=heads[1:])
        at = np.repeat(starts - heads, counts) + np.arange(total, dtype=np.int64)
        weights = data[at] * np.repeat(queries.data[lo:hi].astype(np.float64), counts)
        out[i] = np.bincount(indices[at], weights=weights, minlength=n_docs)
    return out


class SparseStore:
    """Row ``i`` holds document ``i``'s ``{token_id: weight}``.

    Query scores come from the CSC form (the inverted index: one column = one token's postings),
    so a query touches only the postings of its own tokens: no loop over documents. Rows added
    after the last merge live in a small tail with its own CSC, so an ``add`` costs the size of
    what was added, not of the corpus; the tail is merged into the base when it reaches 1/8 of it.
    """

    def __init__(self, vocab_size: int, matrix: sp.csr_array | None = None) -> None:
        self.vocab_size = vocab_size
        self._base = sp.csr_array((0, vocab_size), dtype=np.float32) if matrix is None else sp.csr_array(matrix, dtype=np.float32)
        self._base_csc: sp.csc_array | None = None
        self._tail: list[sp.csr_array] = []
        self._tail_csc: sp.csc_array | None = None

    def __len__(self) -> int:
        return int(self._base.shape[0]) + sum(int(c.shape[0]) for c in self._tail)

    def add(self, rows: sp.csr_array) -> None:
        self._tail.append(sp.csr_array(rows, dtype=np.float32))
        self._tail_csc = None
        tail_rows = sum(c.shape[0] for c in self._tail)
        if tail_rows > max(1024, self._base.shape[0] // 8):
            self._merge()

    def _merge(self) -> None:
        self._base = _stack([self._base, *self._tail], self.vocab_size)
        self._base_csc = self._tail_csc = None
        self._tail = []

    @property
    def matrix(self) -> sp.csr_array:
        """All rows, ``float32 [n, vocab_size]`` CSR."""
        if self._tail:
            self._merge()
        return self._base

    def scores(self, queries: sp.csr_array) -> np.ndarray:
        """Lexical scores ``float64 [n_queries, n_docs]`` (dot products of weights); each query's
        row is contiguous, so its top-k reads memory in order."""
        queries = sp.csr_array(queries)
        if queries.nnz == 0 or len(self) == 0:
            return np.zeros((queries.shape[0], len(self)), dtype=np.float64)
        if self._base_csc is None:
            self._base_csc = self._base.tocsc()
        parts = [_scores(self._base_csc, queries)]
        if self._tail:
            if self._tail_csc is None:
                self._tail_csc = _stack(self._tail, self.vocab_size).tocsc()
            parts.append(_scores(self._tail_csc, queries))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def nbytes(self) -> int:
        """Bytes of the CSR rows and of the CSC inverted index built from them."""
        parts = [self._base, self._base_csc, *self._tail, self._tail_csc]
        return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in parts if m is not None)

    def keep(self, rows: np.ndarray) -> SparseStore:
        return SparseStore(self.vocab_size, self.matrix[rows])
