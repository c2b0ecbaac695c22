"""A search plan (first stage, fusion, rerank) and its exact execution over any candidate source.

:class:`SearchPlan` is what :meth:`M3Index.search` asks of a store; its meaning is the same on
every store. :func:`execute` runs a plan exactly (every candidate scored in every computed mode)
over an :class:`ExactSource`: the local store is one; a remote store that cannot run a plan
server-side can be another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from m3rag import scoring
from m3rag.encoder.output import M3Output
from m3rag.errors import InputValueError
from m3rag.index.filters import Filter, check_filter
from m3rag.index.hits import SearchHit
from m3rag.reranking import RERANK_MODES, RerankMode, hybrid_rerank_scores
from m3rag.validation import check_positive_int

__all__ = ["FUSIONS", "MODES", "RRF_K", "ExactSource", "Fusion", "SearchMode", "SearchPlan", "execute"]

SearchMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["weighted", "rrf"]
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
FUSIONS: tuple[Fusion, ...] = ("weighted", "rrf")
RRF_K = 60
"""The constant of reciprocal-rank fusion, ``w / (RRF_K + rank)``."""

EncodeColbert = Callable[[list[str]], M3Output]
"""Encode passages' ColBERT vectors (the index's encoder, for stores that do not keep them)."""


def _choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise InputValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


@dataclass(frozen=True)
class SearchPlan:
    """What a search computes, store-independent.

    - ``mode``: ``"dense"``, ``"sparse"`` (only documents sharing a token with the query) or
      ``"hybrid"``: the union of each mode's top ``candidates``, every candidate scored exactly in
      both modes, then fused (``fusion="weighted"``: ``(w_d*d + w_s*s) / (w_d + w_s)`` on raw
      scores; ``"rrf"``: ``sum_m w_m / (60 + rank_m)`` over the lists a candidate is in).
    - ``rerank``: the first stage's top ``candidates`` rescored by ``"colbert"`` or by
      ``"hybrid"`` ``(w_d*d + w_s*s + w_c*c) / (w_d + w_s + w_c)``; then the top ``k``.
    - ``filter``: metadata equality, applied before any top-k.
    """

    k: int = 10
    mode: SearchMode = "hybrid"
    fusion: Fusion = "weighted"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(scoring.DEFAULT_WEIGHTS))
    rerank: RerankMode | None = None
    candidates: int = 100
    filter: Filter | None = None

    @classmethod
    def build(
        cls,
        k: int = 10,
        *,
        mode: str = "hybrid",
        weights: scoring.Weights = None,
        fusion: str = "weighted",
        rerank: str | None = None,
        candidates: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> SearchPlan:
        """A checked plan from :meth:`M3Index.search`'s arguments (``candidates`` default ``max(k, 100)``)."""
        check_positive_int(k, "k")
        check_positive_int(candidates, "candidates", optional=True)
        return cls(
            k=k,
            mode=_choice(mode, "mode", MODES),
            fusion=_choice(fusion, "fusion", FUSIONS),
            weights=scoring.resolve_weights(weights),
            rerank=_choice(rerank, "rerank", (None, *RERANK_MODES)),
            candidates=max(candidates or max(k, 100), k),
            filter=check_filter(filter),
        )

    @property
    def depth(self) -> int:
        """How many candidates each first-stage list holds: ``candidates`` when fusing or
        reranking, else ``k``."""
        return self.candidates if (self.mode == "hybrid" or self.rerank) else self.k

    @property
    def uses_dense(self) -> bool:
        return self.mode in ("dense", "hybrid") or self.rerank == "hybrid"

    @property
    def uses_sparse(self) -> bool:
        return self.mode in ("sparse", "hybrid") or self.rerank == "hybrid"

    @property
    def heads(self) -> dict[str, bool]:
        """The query outputs the plan needs (``encode`` keyword arguments)."""
        return dict(return_dense=self.uses_dense, return_sparse=self.uses_sparse, return_colbert_vecs=self.rerank is not None)


class ExactSource(Protocol):
    """Candidates and exact scores for the queries of one search; keys identify documents
    (local rows, or ids) and come back in :meth:`hits`."""

    def first_stage(self, i: int) -> dict[str, np.ndarray]:
        """Query ``i``'s candidate keys per first-stage mode, best first: ``"dense"`` (top depth)
        and/or ``"sparse"`` (top depth with score > 0), as the plan's mode asks."""
        ...

    def dense_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        """Exact dense scores ``float64 [len(keys)]`` of query ``i``."""
        ...

    def sparse_scores(self, i: int, keys: np.ndarray) -> np.ndarray:
        """Exact lexical scores ``float64 [len(keys)]`` of query ``i``."""
        ...

    def colbert_scores(self, i: int, keys: np.ndarray) -> np.ndarray | None:
        """Exact ColBERT scores of query ``i``, or ``None`` if the vectors are not kept."""
        ...

    def texts(self, keys: np.ndarray) -> list[str]: ...

    def hits(self, keys: np.ndarray, final: np.ndarray, per_mode: Mapping[str, np.ndarray]) -> list[SearchHit]: ...


def _ranks(keys: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """1-based rank of each of ``keys`` in ``listed`` (0 = absent)."""
    rank_of = {k: r for r, k in enumerate(listed.tolist(), start=1)}
    return np.fromiter((rank_of.get(k, 0) for k in keys.tolist()), dtype=np.int64, count=len(keys))


def execute(plan: SearchPlan, q: M3Output, source: ExactSource, encode_colbert: EncodeColbert | None = None) -> list[list[SearchHit]]:
    """Run ``plan`` for every query of ``q`` (encoded with ``plan.heads``), best hits first.

    Ties keep the order of the candidate keys (for the local store: insertion order).
    """
    results: list[list[SearchHit]] = []
    for i in range(len(q)):
        lists = source.first_stage(i)
        keys = lists[plan.mode] if plan.mode != "hybrid" else np.unique(np.concatenate([lists["dense"], lists["sparse"]]))
        if len(keys) == 0:
            results.append([])
            continue
        per_mode: dict[str, np.ndarray] = {}
        if plan.uses_dense:
            per_mode["dense"] = source.dense_scores(i, keys)
        if plan.uses_sparse:
            per_mode["sparse"] = source.sparse_scores(i, keys)
        if plan.mode != "hybrid":
            fused = per_mode[plan.mode]
        elif plan.fusion == "weighted":
            fused = scoring.weighted_fusion({m: per_mode[m] for m in ("dense", "sparse")}, plan.weights)
        else:
            fused = scoring.rrf_fusion({m: _ranks(keys, listed) for m, listed in lists.items()}, plan.weights, RRF_K)
        first = scoring.top_k(fused, plan.k if plan.rerank is None else plan.candidates)
        keys, fused = keys[first], fused[first]
        per_mode = {m: s[first] for m, s in per_mode.items()}
        if plan.rerank is not None:
            colbert = source.colbert_scores(i, keys)
            if colbert is None:
                if encode_colbert is None:
                    raise InputValueError("this store keeps no ColBERT vectors and no encoder was given to recompute them")
                out = encode_colbert(source.texts(keys))
                colbert = scoring.colbert_scores_flat(q.colbert_vecs[i], out.colbert, out.colbert_offsets)  # type: ignore[index,arg-type]
            if plan.rerank == "colbert":
                fused, per_mode = colbert, {**per_mode, "colbert": colbert}
            else:
                fused, per_mode = hybrid_rerank_scores(per_mode["dense"], per_mode["sparse"], colbert, plan.weights)
            best = scoring.top_k(fused, plan.k)
            keys, fused = keys[best], fused[best]
            per_mode = {m: s[best] for m, s in per_mode.items()}
        results.append(source.hits(keys, fused, per_mode))
    return results
