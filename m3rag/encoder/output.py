"""Typed results of :meth:`M3Encoder.encode`.

:class:`M3Output` holds a batch of ``n`` texts; :class:`M3Item` holds one. Both can also be read
with FlagEmbedding's keys (``out["dense_vecs"]``, ``out["lexical_weights"]``,
``out["colbert_vecs"]``) so code written for ``BGEM3FlagModel`` keeps working. Token ids are
``int`` (FlagEmbedding uses ``str``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

__all__ = ["FlagKey", "M3Item", "M3Output"]

FlagKey = Literal["dense_vecs", "lexical_weights", "colbert_vecs"]
_FLAG_KEYS: tuple[FlagKey, ...] = ("dense_vecs", "lexical_weights", "colbert_vecs")


def _csr_rows_to_dicts(matrix: sp.csr_array) -> list[dict[int, float]]:
    indptr, indices, data = matrix.indptr, matrix.indices.tolist(), matrix.data.tolist()
    return [dict(zip(indices[a:b], data[a:b])) for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist())]


class _FlagKeys:
    """FlagEmbedding-style read access by key, shared by :class:`M3Output` and :class:`M3Item`."""

    def __getitem__(self, key: FlagKey) -> Any:
        if key not in _FLAG_KEYS:
            raise KeyError(f"{key!r}; M3 outputs have the keys {', '.join(_FLAG_KEYS)}")
        return getattr(self, key)

    def keys(self) -> tuple[FlagKey, ...]:
        return _FLAG_KEYS

    def get(self, key: FlagKey, default: Any = None) -> Any:
        value = self[key] if key in _FLAG_KEYS else None
        return default if value is None else value


@dataclass(frozen=True, eq=False)
class M3Item(_FlagKeys):
    """The outputs for one text; a field is ``None`` when it was not asked for.

    - ``dense_vecs``: ``float32 [d]``, L2-normalised.
    - ``lexical_weights``: ``{token_id: weight}``, weights > 0, special tokens dropped.
    - ``colbert_vecs``: ``float32 [num_tokens - 1, d_colbert]``, rows L2-normalised.
    """

    dense_vecs: np.ndarray | None
    lexical_weights: dict[int, float] | None
    colbert_vecs: np.ndarray | None
    num_tokens: int
    truncated: bool


@dataclass(frozen=True, eq=False)
class M3Output(_FlagKeys):
    """The outputs for ``n`` texts, in input order; a field is ``None`` when it was not asked for.

    - ``dense``: ``float32 [n, d]``, rows L2-normalised.
    - ``sparse``: ``scipy.sparse.csr_array float32 [n, vocab_size]``, sorted indices, only
      weights > 0 stored; ``lexical_weights`` gives the same as ``{token_id: weight}`` dicts.
    - ``colbert``: ``float32 [sum_i L_i, d_colbert]``, all texts' vectors in one array, text ``i``
      at rows ``colbert_offsets[i]:colbert_offsets[i + 1]``; ``colbert_vecs`` gives the per-text
      views (no copy).
    - ``num_tokens``: ``int64 [n]`` tokens per text after truncation, specials included.
    - ``truncated``: ``bool [n]`` whether a text was cut at ``max_length``.
    """

    dense: np.ndarray | None
    sparse: sp.csr_array | None
    colbert: np.ndarray | None
    colbert_offsets: np.ndarray | None
    num_tokens: np.ndarray
    truncated: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.num_tokens.shape[0])

    @property
    def dense_vecs(self) -> np.ndarray | None:
        return self.dense

    @cached_property
    def lexical_weights(self) -> list[dict[int, float]] | None:
        return None if self.sparse is None else _csr_rows_to_dicts(self.sparse)

    @cached_property
    def colbert_vecs(self) -> list[np.ndarray] | None:
        if self.colbert is None or self.colbert_offsets is None:
            return None
        bounds = self.colbert_offsets.tolist()
        return [self.colbert[a:b] for a, b in itertools.pairwise(bounds)]

    def item(self, i: int) -> M3Item:
        """The outputs of text ``i`` (negative indices count from the end)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"text index {i} is out of range for {n} texts")
        i %= n
        sparse = self.sparse
        lexical = None
        if sparse is not None:
            a, b = sparse.indptr[i], sparse.indptr[i + 1]
            lexical = dict(zip(sparse.indices[a:b].tolist(), sparse.data[a:b].tolist()))
        colbert = None
        if self.colbert is not None and self.colbert_offsets is not None:
            colbert = self.colbert[self.colbert_offsets[i] : self.colbert_offsets[i + 1]]
        return M3Item(
            dense_vecs=None if self.dense is None else self.dense[i],
            lexical_weights=lexical,
            colbert_vecs=colbert,
            num_tokens=int(self.num_tokens[i]),
            truncated=bool(self.truncated[i]),
        )

    def slice(self, start: int, stop: int) -> M3Output:
        """Texts ``start:stop`` as their own output (dense and ColBERT rows are views, no copy)."""
        colbert = offsets = None
        if self.colbert is not None and self.colbert_offsets is not None:
            a, b = int(self.colbert_offsets[start]), int(self.colbert_offsets[stop])
            colbert, offsets = self.colbert[a:b], self.colbert_offsets[start : stop + 1] - a
        return M3Output(
            dense=None if self.dense is None else self.dense[start:stop],
            sparse=None if self.sparse is None else self.sparse[start:stop],
            colbert=colbert,
            colbert_offsets=offsets,
            num_tokens=self.num_tokens[start:stop],
            truncated=self.truncated[start:stop],
        )

    def __iter__(self) -> Iterator[M3Item]:
        return (self.item(i) for i in range(len(self)))
