"""Scores between M3 representations, with FlagEmbedding's semantics.

- dense: ``q . p`` of L2-normalised vectors.
- lexical: ``sum over token ids in both of w_q * w_p`` (a dot product, not a cosine).
- ColBERT: ``mean_i max_j q_i . p_j`` over the real vectors of query and passage. Padding never
  takes part in the max (FlagEmbedding's batched ``compute_score`` lets zero padding vectors clamp
  negative maxima to 0; m3rag computes the score as defined, as its ``colbert_score`` does).

Inputs are numpy arrays (float32) or ``{token_id: weight}`` mappings; outputs are float64
numpy arrays or Python floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    import torch

from m3rag.errors import InputTypeError, InputValueError

__all__ = [
    "DEFAULT_WEIGHTS",
    "EQUAL_WEIGHTS",
    "Weights",
    "colbert_pair_scores",
    "colbert_score",
    "colbert_scores",
    "colbert_scores_flat",
    "dense_pair_scores",
    "lexical_matching_score",
    "lexical_pair_scores",
    "lexical_scores",
    "resolve_weights",
    "rrf_fusion",
    "top_k",
    "weighted_fusion",
]

# Upper bound on the float32 elements of one padded ColBERT similarity block (~256 MB).
_COLBERT_BLOCK = 64 * 1024 * 1024


DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType({"dense": 1.0, "sparse": 0.3, "colbert": 1.0})
"""Weights of M3's hybrid ranking in the BGE-M3 paper (dense 1, sparse 0.3, ColBERT 1): the
default of the index, the rerankers and the adapters."""
EQUAL_WEIGHTS: Mapping[str, float] = MappingProxyType({"dense": 1.0, "sparse": 1.0, "colbert": 1.0})
"""``compute_score``'s default ``weights_for_different_modes`` (FlagEmbedding's ``[1, 1, 1]``)."""
MODES = ("dense", "sparse", "colbert")

Weights = Sequence[float] | Mapping[str, float] | None
"""``[w_dense, w_sparse, w_colbert]``, ``{mode: weight}`` or ``None`` (the defaults)."""


def resolve_weights(weights: Weights, default: Mapping[str, float] = DEFAULT_WEIGHTS) -> dict[str, float]:
    """``[w_dense, w_sparse, w_colbert]`` (FlagEmbedding's order) or a ``{mode: w}`` dict whose
    missing modes keep ``default``; ``None`` is ``default``. Weights must be finite and >= 0; that
    the modes being combined sum to > 0 is checked where they are combined (:func:`weighted_fusion`)."""
    if weights is None:
        return dict(default)
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(MODES), key=str)
        if unknown:
            raise InputValueError(f"unknown modes in weights: {unknown}; use dense, sparse, colbert")
        values: Sequence[Any] = [weights.get(m, default[m]) for m in MODES]
    elif isinstance(weights, str | bytes) or not isinstance(weights, Sequence) or len(weights) != 3:
        raise InputTypeError(f"weights must be [dense, sparse, colbert] or a dict of them, got {weights!r}")
    else:
        values = weights
    checked = []
    for mode, value in zip(MODES, values):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise InputTypeError(f"the {mode} weight must be a number, got {value!r}")
        if not np.isfinite(value) or value < 0:
            raise InputValueError(f"the {mode} weight must be finite and >= 0, got {value!r}")
        checked.append(float(value))
    return dict(zip(MODES, checked))


def _lexical_one(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> float:
    if len(b) < len(a):
        a, b = b, a
    b_int = {int(k): v for k, v in b.items()}
    return float(sum(float(w) * float(b_int.get(int(k), 0.0)) for k, w in a.items()))


def lexical_matching_score(a: object, b: object) -> float | np.ndarray:
    """FlagEmbedding's ``compute_lexical_matching_score``: dict x dict -> float, list x list of
    ``{token_id: weight}`` -> ``[len(a), len(b)]`` array. Keys may be ``int`` or FlagEmbedding's
    ``str`` token ids."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return _lexical_one(a, b)
    if not isinstance(a, Mapping) and not isinstance(b, Mapping) and _is_list(a) and _is_list(b):
        return np.array([[_lexical_one(x, y) for y in b] for x in a], dtype=np.float64).reshape(len(a), len(b))
    raise InputTypeError("lexical weights must be two dicts or two lists of dicts {token_id: weight}")


def _is_list(value: object) -> TypeGuard[Sequence[Any]]:
    """A sequence that is not a str or bytes (callers may pass anything)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def lexical_scores(queries: sp.csr_array, passages: sp.csr_array) -> np.ndarray:
    """All-pairs lexical scores ``[m, n]`` float64 of two CSR matrices over the vocabulary."""
    return np.asarray((queries @ passages.T).toarray(), dtype=np.float64)


def lexical_pair_scores(queries: sp.csr_array, passages: sp.csr_array) -> np.ndarray:
    """Row-wise lexical scores ``[n]`` float64: query row ``i`` against passage row ``i``."""
    return np.asarray(queries.multiply(passages).sum(axis=1), dtype=np.float64).reshape(-1)


def dense_pair_scores(queries: np.ndarray, passages: np.ndarray) -> np.ndarray:
    """Row-wise dense scores ``[n]`` float64 of ``[n, d]`` arrays."""
    scores: np.ndarray = np.einsum("ij,ij->i", queries, passages, dtype=np.float64)
    return scores


def colbert_score(query: np.ndarray, passage: np.ndarray) -> float:
    """ColBERT score of one query ``[Lq, d]`` and one passage ``[Lp, d]`` (``mean_i max_j``)."""
    q, p = np.asarray(query, dtype=np.float32), np.asarray(passage, dtype=np.float32)
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1]:
        raise InputValueError(f"ColBERT vectors must be [Lq, d] and [Lp, d], got {q.shape} and {p.shape}")
    if q.shape[0] == 0 or p.shape[0] == 0:
        return 0.0
    return float((q @ p.T).max(axis=1).mean(dtype=np.float64))


def _pad(vectors: Sequence[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged ``[L_i, d]`` arrays into ``[n, max L, d]`` float32 and a ``[n, max L]`` mask."""
    import torch

    lengths = torch.tensor([len(v) for v in vectors], dtype=torch.int64)
    longest = int(lengths.max()) if len(vectors) else 0
    padded = torch.zeros(len(vectors), longest, dim, dtype=torch.float32)
    mask = torch.arange(longest)[None, :] < lengths[:, None]
    if len(vectors):
        padded[mask] = torch.from_numpy(np.concatenate([np.asarray(v, dtype=np.float32) for v in vectors]))
    return padded, mask


def _masked_maxsim(q: torch.Tensor, q_mask: torch.Tensor, p: torch.Tensor, p_mask: torch.Tensor) -> torch.Tensor:
    """``[n]`` ColBERT scores of padded ``q [n|1, Lq, d]`` against padded ``p [n, Lp, d]``."""
    import torch

    sim = torch.einsum("bqd,bpd->bqp", q, p)
    sim.masked_fill_(~p_mask[:, None, :], float("-inf"))
    best = sim.max(dim=2).values.masked_fill_(~q_mask, 0.0)
    counts = q_mask.sum(dim=1).clamp_min(1)
    scores = best.double().sum(dim=1) / counts
    return scores.masked_fill_(~p_mask.any(dim=1), 0.0)


def colbert_scores(query: np.ndarray, passages: Sequence[np.ndarray]) -> np.ndarray:
    """ColBERT scores ``[n]`` float64 of one query ``[Lq, d]`` against ``n`` passages ``[L_i, d]``.

    Batched as padded tensor products with padding masked out, in blocks of bounded memory.
    """
    import torch

    q = torch.from_numpy(np.asarray(query, dtype=np.float32))
    out = np.zeros(len(passages), dtype=np.float64)
    if len(passages) == 0 or q.shape[0] == 0:
        return out
    longest = max(len(p) for p in passages) or 1
    step = max(1, _COLBERT_BLOCK // (q.shape[0] * longest))
    q_mask = torch.ones(1, q.shape[0], dtype=torch.bool)
    for start in range(0, len(passages), step):
        p, p_mask = _pad(passages[start : start + step], q.shape[1])
        qb = q[None].expand(p.shape[0], -1, -1)
        out[start : start + len(p)] = _masked_maxsim(qb, q_mask.expand(p.shape[0], -1), p, p_mask).numpy()
    return out


def colbert_pair_scores(queries: Sequence[np.ndarray], passages: Sequence[np.ndarray]) -> np.ndarray:
    """Row-wise ColBERT scores ``[n]`` float64: query ``i`` against passage ``i``."""
    if len(queries) != len(passages):
        raise InputValueError(f"{len(queries)} queries but {len(passages)} passages")
    out = np.zeros(len(queries), dtype=np.float64)
    if not queries:
        return out
    dim = int(np.shape(queries[0])[1])
    lq = max(len(q) for q in queries) or 1
    lp = max(len(p) for p in passages) or 1
    step = max(1, _COLBERT_BLOCK // (lq * lp))
    for start in range(0, len(queries), step):
        q, q_mask = _pad(queries[start : start + step], dim)
        p, p_mask = _pad(passages[start : start + step], dim)
        out[start : start + len(q)] = _masked_maxsim(q, q_mask, p, p_mask).numpy()
    return out


def colbert_scores_flat(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """ColBERT scores ``[n]`` float64 of one query ``[Lq, d]`` against ``n`` passages stored flat.

    Passage ``i`` is ``vectors[offsets[i]:offsets[i + 1]]`` (any float dtype; computed in
    float32). One matrix product over all passage rows, then a segmented max: no padding at all.
    A passage with no rows scores 0.
    """
    q = np.asarray(query, dtype=np.float32)
    n = len(offsets) - 1
    out = np.zeros(n, dtype=np.float64)
    if n == 0 or q.shape[0] == 0:
        return out
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    if not nonempty.any():
        return out
    import torch  # one matrix product over every passage row (torch's GEMM is faster than numpy's here)

    sim = (torch.from_numpy(q) @ torch.from_numpy(np.asarray(vectors, dtype=np.float32)).T).numpy()  # [Lq, rows]
    starts = (offsets[:-1] - offsets[0])[nonempty]
    best = np.maximum.reduceat(sim, starts, axis=1)  # [Lq, non-empty passages]
    out[nonempty] = best.mean(axis=0, dtype=np.float64)
    return out


def weighted_fusion(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """``sum_m w_m * s_m / sum_m w_m`` over the modes in ``scores`` (M3's own ensemble)."""
    total = sum(weights[m] for m in scores)
    if total <= 0:
        raise InputValueError(f"the weights of modes {sorted(scores)} sum to {total}; they must sum to > 0")
    return sum(weights[m] * np.asarray(s, dtype=np.float64) for m, s in scores.items()) / total  # type: ignore[return-value]


def rrf_fusion(ranks: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion: ``sum_m w_m / (k + rank_m)``; ``rank_m`` is 1-based, 0 = not ranked."""
    fused: np.ndarray | None = None
    for mode, rank in ranks.items():
        rank = np.asarray(rank)
        term = np.where(rank > 0, weights[mode] / (k + np.maximum(rank, 1)), 0.0)
        fused = term if fused is None else fused + term
    assert fused is not None
    return fused


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties go to the lower index."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    # argpartition may cut a tie arbitrarily: widen to every index tied with the k-th score
    kth = scores[part].min()
    part = np.flatnonzero(scores >= kth)
    order = np.lexsort((part, -scores[part]))
    return part[order][:k]
