"""Reranking candidates by ColBERT or by M3's weighted dense + sparse + ColBERT score, or by a
cross-encoder.

One function per kind serves the index and both framework rerankers: :func:`rerank` encodes the
query and each candidate once (only the heads the mode needs) and scores all candidates in one
batched product; :func:`crossencoder_rank` scores every (query, candidate) pair in one
``compute_score`` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from m3rag import scoring
from m3rag.encoder.output import M3Item, M3Output
from m3rag.encoder.protocol import M3EncoderLike, RerankerLike
from m3rag.errors import InputTypeError, InputValueError
from m3rag.scoring import DEFAULT_WEIGHTS, Weights, resolve_weights
from m3rag.validation import check_positive_int, check_texts

__all__ = ["RERANK_MODES", "RerankMode", "Reranked", "acrossencoder_rank", "arerank", "crossencoder_rank", "rerank", "rerank_scores"]

RerankMode = Literal["colbert", "hybrid"]
RERANK_MODES: tuple[RerankMode, ...] = ("colbert", "hybrid")


@dataclass(frozen=True)
class Reranked:
    """One reranked candidate: its position in the input, final score and every computed mode's score."""

    index: int
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def rerank_scores(
    query: M3Item,
    passages: M3Output,
    *,
    mode: RerankMode = "colbert",
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Final scores ``[n]`` and per-mode scores of encoded passages against an encoded query."""
    if query.colbert_vecs is None or passages.colbert is None or passages.colbert_offsets is None:
        raise InputValueError("reranking needs ColBERT vectors of the query and the passages")
    colbert = scoring.colbert_scores_flat(query.colbert_vecs, passages.colbert, passages.colbert_offsets)
    if mode == "colbert":
        return colbert, {"colbert": colbert}
    if query.dense_vecs is None or passages.dense is None or query.lexical_weights is None or passages.sparse is None:
        raise InputValueError("hybrid reranking needs dense and sparse outputs too")
    dense = passages.dense.astype(np.float64) @ query.dense_vecs.astype(np.float64)
    q_ids = np.fromiter(query.lexical_weights.keys(), dtype=np.int64, count=len(query.lexical_weights))
    q_w = np.fromiter(query.lexical_weights.values(), dtype=np.float64, count=len(q_ids))
    sparse = np.asarray(passages.sparse[:, q_ids] @ q_w, dtype=np.float64).reshape(-1)
    return hybrid_rerank_scores(dense, sparse, colbert, weights)


def hybrid_rerank_scores(
    dense: np.ndarray, sparse: np.ndarray, colbert: np.ndarray, weights: Mapping[str, float]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """M3's hybrid rerank score ``(w_d*dense + w_s*sparse + w_c*colbert) / (w_d + w_s + w_c)`` and
    the per-mode scores: the one formula the index, the stores and the rerankers use."""
    per_mode = {"dense": dense, "sparse": sparse, "colbert": colbert}
    return scoring.weighted_fusion(per_mode, weights), per_mode


def rerank(
    encoder: M3EncoderLike,
    query: str,
    passages: Sequence[str],
    *,
    mode: RerankMode = "colbert",
    weights: Weights = None,
    top_n: int | None = None,
    max_query_length: int | None = None,
    max_passage_length: int | None = None,
    batch_size: int | None = None,
) -> list[Reranked]:
    """Rerank ``passages`` for ``query``, best first; ``top_n`` keeps only the best ones.

    ``mode="colbert"``: the ColBERT score. ``mode="hybrid"``: ``(w_d*dense + w_s*sparse +
    w_c*colbert) / (w_d + w_s + w_c)`` with ``weights`` (default
    :data:`m3rag.scoring.DEFAULT_WEIGHTS`: dense 1, sparse 0.3, ColBERT 1, the BGE-M3 paper's).
    """
    passages, resolved = _check(query, passages, mode, weights, top_n)
    if not passages:
        return []
    heads = _heads(mode)
    q = encoder.encode_queries(query, batch_size, max_query_length, **heads)
    p = encoder.encode_corpus(passages, batch_size, max_passage_length, **heads)
    return _ranked(q, p, mode, resolved, top_n)


async def arerank(
    encoder: M3EncoderLike,
    query: str,
    passages: Sequence[str],
    *,
    mode: RerankMode = "colbert",
    weights: Weights = None,
    top_n: int | None = None,
    max_query_length: int | None = None,
    max_passage_length: int | None = None,
    batch_size: int | None = None,
) -> list[Reranked]:
    """:func:`rerank` for asyncio: encoding through :meth:`M3Encoder.aencode` (coalesced when on)."""
    passages, resolved = _check(query, passages, mode, weights, top_n)
    if not passages:
        return []
    heads = _heads(mode)
    q = await encoder.aencode_queries(query, batch_size, max_query_length, **heads)
    p = await encoder.aencode_corpus(passages, batch_size, max_passage_length, **heads)
    return _ranked(q, p, mode, resolved, top_n)


def _check(
    query: str, passages: Sequence[str], mode: str, weights: Sequence[float] | Mapping[str, float] | None, top_n: int | None
) -> tuple[list[str], dict[str, float]]:
    if mode not in RERANK_MODES:
        raise InputValueError(f"rerank mode must be 'colbert' or 'hybrid', got {mode!r}")
    if not isinstance(query, str):
        raise InputTypeError(f"query must be a str, got {type(query).__name__}")
    check_positive_int(top_n, "top_n", optional=True)
    texts, single = check_texts(passages, "passages")
    if single:
        raise InputTypeError("passages must be a sequence of str, not one str")
    return texts, resolve_weights(weights)


def _heads(mode: str) -> dict[str, bool]:
    hybrid = mode == "hybrid"
    return dict(return_dense=hybrid, return_sparse=hybrid, return_colbert_vecs=True)


def _ranked(q: M3Item, p: M3Output, mode: str, weights: dict[str, float], top_n: int | None) -> list[Reranked]:
    final, per_mode = rerank_scores(q, p, mode=mode, weights=weights)  # type: ignore[arg-type]
    order = scoring.top_k(final, top_n or len(p))
    return [Reranked(int(i), float(final[i]), {m: float(s[i]) for m, s in per_mode.items()}) for i in order]


def crossencoder_rank(
    reranker: RerankerLike,
    query: str,
    passages: Sequence[str],
    *,
    top_n: int | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
) -> list[Reranked]:
    """``passages`` ranked for ``query`` by a cross-encoder (:class:`~m3rag.BGEReranker`), best
    first (ties keep the input order); ``top_n`` keeps only the best ones. ``score`` is the
    cross-encoder's (its sigmoid with ``normalize``), also in ``scores["reranker"]``."""
    texts = _check_crossencoder(query, passages, top_n)
    if not texts:
        return []
    scores = reranker.compute_score([(query, p) for p in texts], batch_size, max_length, normalize)
    return _crossencoder_ranked(scores, top_n)


async def acrossencoder_rank(
    reranker: RerankerLike,
    query: str,
    passages: Sequence[str],
    *,
    top_n: int | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
) -> list[Reranked]:
    """:func:`crossencoder_rank` for asyncio (the reranker's ``acompute_score``)."""
    texts = _check_crossencoder(query, passages, top_n)
    if not texts:
        return []
    scores = await reranker.acompute_score([(query, p) for p in texts], batch_size, max_length, normalize)
    return _crossencoder_ranked(scores, top_n)


def _check_crossencoder(query: str, passages: Sequence[str], top_n: int | None) -> list[str]:
    if not isinstance(query, str):
        raise InputTypeError(f"query must be a str, got {type(query).__name__}")
    check_positive_int(top_n, "top_n", optional=True)
    texts, single = check_texts(passages, "passages")
    if single:
        raise InputTypeError("passages must be a sequence of str, not one str")
    return texts


def _crossencoder_ranked(scores: Sequence[float], top_n: int | None) -> list[Reranked]:
    values = np.asarray(scores, dtype=np.float64)
    return [Reranked(int(i), float(values[i]), {"reranker": float(values[i])}) for i in scoring.top_k(values, top_n or len(values))]
