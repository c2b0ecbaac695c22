"""Lexical weights as an inverted index: a CSR matrix of documents x vocabulary, and its CSC twin."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["SparseStore"]


class SparseStore:
    """Row ``i`` holds document ``i``'s ``{token_id: weight}``; appended in chunks, joined lazily.

    Query scores come from the CSC form (the inverted index: one column = one token's postings),
    so a query touches only the postings of its own tokens: no loop over documents.
    """

    def __init__(self, vocab_size: int, matrix: sp.csr_array | None = None) -> None:
        self.vocab_size = vocab_size
        self._chunks: list[sp.csr_array] = [] if matrix is None else [matrix]
        self._csr: sp.csr_array | None = matrix
        self._csc: sp.csc_array | None = None

    def __len__(self) -> int:
        return sum(c.shape[0] for c in self._chunks)

    def add(self, rows: sp.csr_array) -> None:
        self._chunks.append(sp.csr_array(rows, dtype=np.float32))
        self._csr = self._csc = None

    @property
    def matrix(self) -> sp.csr_array:
        """All rows, ``float32 [n, vocab_size]`` CSR."""
        if self._csr is None:
            if not self._chunks:
                self._csr = sp.csr_array((0, self.vocab_size), dtype=np.float32)
            else:
                self._csr = sp.csr_array(sp.vstack(self._chunks, format="csr"), dtype=np.float32)
            self._chunks = [self._csr]
        return self._csr

    def scores(self, queries: sp.csr_array) -> np.ndarray:
        """Lexical scores ``float64 [n_docs, n_queries]`` (dot products of weights)."""
        if self._csc is None:
            self._csc = self.matrix.tocsc()
        tokens = np.unique(queries.indices)
        if len(tokens) == 0 or self._csc.shape[0] == 0:
            return np.zeros((self._csc.shape[0], queries.shape[0]), dtype=np.float64)
        postings = self._csc[:, tokens]  # only the query tokens' columns
        weights = queries[:, tokens].T.toarray().astype(np.float64)
        return np.asarray(postings @ weights, dtype=np.float64)

    def keep(self, rows: np.ndarray) -> SparseStore:
        return SparseStore(self.vocab_size, self.matrix[rows])
