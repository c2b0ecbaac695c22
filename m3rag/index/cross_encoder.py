"""The cross-encoder stage of a search (BGE-M3's model card pipeline: hybrid retrieval, then a
bge-reranker over the top candidates). One function for the index and, through it, both
framework retrievers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from m3rag.encoder.protocol import RerankerLike
from m3rag.errors import InputTypeError
from m3rag.index.hits import SearchHit
from m3rag.index.plan import SearchPlan

__all__ = ["RERANKER_SCORE", "acrossencoder_rerank", "check_reranker", "crossencoder_rerank", "first_stage"]

RERANKER_SCORE = "reranker"
"""The key of the cross-encoder's score in :attr:`SearchHit.scores`."""


def check_reranker(reranker: object) -> RerankerLike | None:
    """``reranker`` if it is ``None`` or scores pairs as :class:`~m3rag.BGEReranker` does."""
    if reranker is not None and not isinstance(reranker, RerankerLike):
        raise InputTypeError(f"reranker must be a BGEReranker (compute_score / acompute_score over pairs), got {type(reranker).__name__}")
    return reranker


def first_stage(plan: SearchPlan, reranker: RerankerLike | None) -> SearchPlan:
    """The plan the store runs: with a cross-encoder, the top ``candidates`` hits instead of ``k``."""
    return plan if reranker is None else dataclasses.replace(plan, k=plan.candidates)


def crossencoder_rerank(
    reranker: RerankerLike, queries: Sequence[str], found: Sequence[Sequence[SearchHit]], k: int
) -> list[list[SearchHit]]:
    """Each query's hits rescored by the cross-encoder (one call for every pair of every query),
    best first, the top ``k``: ``score`` is the cross-encoder's, also in ``scores["reranker"]``
    beside the first stage's per-mode scores. Ties keep the first stage's order."""
    pairs = [(query, hit.text) for query, hits in zip(queries, found) for hit in hits]
    return _ranked(found, reranker.compute_score(pairs) if pairs else [], k)


async def acrossencoder_rerank(
    reranker: RerankerLike, queries: Sequence[str], found: Sequence[Sequence[SearchHit]], k: int
) -> list[list[SearchHit]]:
    """:func:`crossencoder_rerank` for asyncio (the reranker's ``acompute_score``)."""
    pairs = [(query, hit.text) for query, hits in zip(queries, found) for hit in hits]
    return _ranked(found, await reranker.acompute_score(pairs) if pairs else [], k)


def _ranked(found: Sequence[Sequence[SearchHit]], scores: Sequence[float], k: int) -> list[list[SearchHit]]:
    out, start = [], 0
    for hits in found:
        own = [float(s) for s in scores[start : start + len(hits)]]
        start += len(hits)
        order = sorted(range(len(hits)), key=lambda i: -own[i])[:k]
        out.append([dataclasses.replace(hits[i], score=own[i], scores={**hits[i].scores, RERANKER_SCORE: own[i]}) for i in order])
    return out
