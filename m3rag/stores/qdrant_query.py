"""M3's search plans as Qdrant Query API requests: one request per search (first stage, fusion and
rerank all server-side), and the hits of its answer with M3's scores.

The request tree, ``D`` / ``S`` being the filtered dense / sparse top-``depth`` prefetches:

- ``dense`` / ``sparse``: ``D`` / ``S`` itself, limit ``k``.
- ``hybrid``, ``fusion="weighted"``: the union ``[D, S]`` rescored by dense and by sparse (two
  prefetches over it, so every candidate has its exact score in both modes), fused by the formula
  ``(w_d*$score[0] + w_s*$score[1]) / (w_d + w_s)``. A candidate the sparse rescoring leaves out
  shares no token with the query: its default 0 is exact.
- ``hybrid``, ``fusion="rrf"``: each list ranked alone by Qdrant's RRF with ``k=61`` (it scores
  ``1 / (k - 1 + rank)``: M3's ``1 / (60 + rank)``), fused by ``w_d*$score[0] + w_s*$score[1]``
  (0 for a list that lacks the candidate). Qdrant's own weighted RRF stretches ranks instead.
- ``rerank="colbert"``: the first stage (limit ``candidates``) rescored by the ``colbert``
  multivector with the query divided by its row count: MAX_SIM sums over query rows, M3 averages.
- ``rerank="hybrid"``: the first stage rescored by dense, sparse and ColBERT, fused by
  ``(w_d*d + w_s*s + w_c*c) / (w_d + w_s + w_c)`` (after a weighted first stage, whose score
  already is ``(w_d*d + w_s*s) / (w_d + w_s)``, only the ColBERT rescoring is added).

A prefetch tree is a tree: a list used twice is searched twice. The weighted first stage runs
``D`` and ``S`` twice (once for their own lists, once to rescore the other's members); a hybrid
rerank runs the first stage twice or three times.

Hits carry each computed mode's score like the local store's: dense and sparse recomputed from
the hits' own vectors (returned by the same request), ColBERT read off the final score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from m3rag import scoring
from m3rag.encoder.output import M3Output
from m3rag.index.hits import SearchHit
from m3rag.index.plan import RRF_K, SearchPlan
from m3rag.reranking import hybrid_rerank_scores
from m3rag.stores.remote import dense_scores, import_extra, order_hits, query_terms, sparse_matrix, sparse_scores

__all__ = ["PAYLOAD", "check_weights", "hits", "request"]

models = import_extra("qdrant_client.models", "qdrant")

PAYLOAD = ["id", "seq", "text", "meta"]
"""Payload fields a hit needs (``terms`` stays on the server)."""
_DERIVE_MIN_SHARE = 0.01
"""With ``rerank="hybrid"``, a hit's ColBERT score is derived from the final score when the ColBERT
weight is at least this share of the total (error <= 1e-7 / share); below, its vectors are fetched."""


def check_weights(plan: SearchPlan) -> None:
    """The :class:`~m3rag.InputValueError` the local store raises for weights summing to 0."""
    zero = np.zeros(1)
    if plan.mode == "hybrid" and plan.fusion == "weighted":
        scoring.weighted_fusion({"dense": zero, "sparse": zero}, plan.weights)
    if plan.rerank == "hybrid":
        scoring.weighted_fusion({"dense": zero, "sparse": zero, "colbert": zero}, plan.weights)


def _fetches_colbert(plan: SearchPlan) -> bool:
    w = plan.weights
    return plan.rerank == "hybrid" and w["colbert"] < _DERIVE_MIN_SHARE * (w["dense"] + w["sparse"] + w["colbert"])


def _formula(coefficients: Sequence[float], absent_is_zero: Sequence[int]) -> Any:
    """``sum_i c_i * $score[i]``; prefetch ``i`` in ``absent_is_zero`` may lack a point (0 then)."""
    terms = [models.MultExpression(mult=[float(c), f"$score[{i}]"]) for i, c in enumerate(coefficients)]
    return models.FormulaQuery(formula=models.SumExpression(sum=terms), defaults={f"$score[{i}]": 0.0 for i in absent_is_zero})


def request(plan: SearchPlan, q: M3Output, i: int, *, exact: bool, hnsw_ef: int | None) -> Any:
    """The ``QueryRequest`` running ``plan`` for query ``i`` of ``q``."""
    terms = query_terms(plan.filter)
    flt = models.Filter(must=[models.FieldCondition(key="terms", match=models.MatchValue(value=t)) for t in terms]) if terms else None
    depth, w = plan.depth, plan.weights
    dense = q.dense[i].tolist() if plan.uses_dense and q.dense is not None else None
    sparse = None
    if plan.uses_sparse and q.sparse is not None:
        a, b = int(q.sparse.indptr[i]), int(q.sparse.indptr[i + 1])
        sparse = models.SparseVector(indices=q.sparse.indices[a:b].tolist(), values=q.sparse.data[a:b].tolist())
    colbert = None
    if plan.rerank is not None and q.colbert_vecs is not None:
        rows = np.asarray(q.colbert_vecs[i], dtype=np.float32)
        colbert = (rows / np.float32(max(len(rows), 1))).tolist()
    params = models.SearchParams(exact=True) if exact else models.SearchParams(hnsw_ef=hnsw_ef)
    d_pre = models.Prefetch(query=dense, using="dense", limit=depth, filter=flt, params=params)
    s_pre = models.Prefetch(query=sparse, using="sparse", limit=depth, filter=flt)

    def rescored(inner: list[Any], limit: int, modes: Sequence[str]) -> list[Any]:
        vectors = {"dense": dense, "sparse": sparse, "colbert": colbert}
        return [models.Prefetch(prefetch=inner, query=vectors[m], using=m, limit=limit) for m in modes]

    first: Any
    if plan.mode == "dense":
        first = d_pre
    elif plan.mode == "sparse":
        first = s_pre
    elif plan.fusion == "weighted":
        total = w["dense"] + w["sparse"]
        union = rescored([d_pre, s_pre], 2 * depth, ("dense", "sparse"))
        first = models.Prefetch(prefetch=union, query=_formula([w["dense"] / total, w["sparse"] / total], [1]), limit=depth)
    else:
        rrf = models.RrfQuery(rrf=models.Rrf(k=RRF_K + 1))
        ranked = [models.Prefetch(prefetch=[d_pre], query=rrf, limit=depth), models.Prefetch(prefetch=[s_pre], query=rrf, limit=depth)]
        first = models.Prefetch(prefetch=ranked, query=_formula([w["dense"], w["sparse"]], [0, 1]), limit=depth)

    fields: dict[str, Any] = dict(filter=flt, limit=plan.k, with_payload=PAYLOAD)
    vectors = [m for m in ("dense", "sparse") if getattr(plan, f"uses_{m}")] + (["colbert"] if _fetches_colbert(plan) else [])
    fields["with_vector"] = vectors or False
    if plan.rerank == "colbert":
        return models.QueryRequest(prefetch=first, query=colbert, using="colbert", **fields)
    if plan.rerank == "hybrid":
        total = w["dense"] + w["sparse"] + w["colbert"]
        if plan.mode == "hybrid" and plan.fusion == "weighted":
            # the first stage's own score is (w_d*d + w_s*s) / (w_d + w_s): only ColBERT is missing,
            # so the first stage runs twice instead of three times
            query = _formula([(w["dense"] + w["sparse"]) / total, w["colbert"] / total], [])
            return models.QueryRequest(prefetch=[first, *rescored([first], depth, ("colbert",))], query=query, **fields)
        query = _formula([w["dense"] / total, w["sparse"] / total, w["colbert"] / total], [1])
        return models.QueryRequest(prefetch=rescored([first], depth, ("dense", "sparse", "colbert")), query=query, **fields)
    return models.QueryRequest(prefetch=first.prefetch, query=first.query, using=first.using, params=first.params, **fields)


def _vector(point: Any, name: str) -> Any:
    vectors = point.vector if isinstance(point.vector, dict) else {}
    if name not in vectors:
        raise KeyError(f"Qdrant returned point {point.id} without its {name!r} vector")
    return vectors[name]


def hits(plan: SearchPlan, q: M3Output, i: int, points: Sequence[Any], vocab_size: int) -> list[SearchHit]:
    """The hits of query ``i`` from the points Qdrant returned for :func:`request`: M3's final
    score and each computed mode's score, best first, ties in insertion order."""
    if not points:
        return []
    w = plan.weights
    per_mode: dict[str, np.ndarray] = {}
    if plan.uses_dense:
        per_mode["dense"] = dense_scores(q.dense[i], np.array([_vector(p, "dense") for p in points], dtype=np.float32))  # type: ignore[index]
    if plan.uses_sparse:
        rows = [(list(s.indices), list(s.values)) for s in (_vector(p, "sparse") for p in points)]
        per_mode["sparse"] = sparse_scores(q.sparse[[i]], sparse_matrix(rows, vocab_size))  # type: ignore[index]
    server = np.array([p.score for p in points], dtype=np.float64)
    if plan.rerank is None:
        if plan.mode != "hybrid":
            final = per_mode[plan.mode]
        elif plan.fusion == "weighted":
            final = scoring.weighted_fusion({m: per_mode[m] for m in ("dense", "sparse")}, w)
        else:
            final = server
    elif plan.rerank == "colbert":
        final = per_mode["colbert"] = server
    elif _fetches_colbert(plan):
        parts = [np.asarray(_vector(p, "colbert"), dtype=np.float32) for p in points]
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in parts])])
        colbert = scoring.colbert_scores_flat(q.colbert_vecs[i], np.concatenate(parts), offsets)  # type: ignore[index]
        final, per_mode = hybrid_rerank_scores(per_mode["dense"], per_mode["sparse"], colbert, w)
    else:
        total = w["dense"] + w["sparse"] + w["colbert"]
        per_mode["colbert"] = (server * total - w["dense"] * per_mode["dense"] - w["sparse"] * per_mode["sparse"]) / w["colbert"]
        final = server
    found = [
        SearchHit(
            id=p.payload["id"],
            text=p.payload["text"],
            metadata=dict(p.payload.get("meta") or {}),
            score=float(final[j]),
            scores={m: float(s[j]) for m, s in per_mode.items()},
        )
        for j, p in enumerate(points)
    ]
    return order_hits(found, [int(p.payload["seq"]) for p in points])
