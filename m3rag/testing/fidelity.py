"""How far a reduced-precision encoder (bf16/fp16) lands from the fp32 one, in the terms users feel.

Used by the tests (bounds on small checkpoints) and ``benchmarks/fidelity.py`` (the README table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict, TypeVar

import numpy as np

from m3rag.encoder.m3 import M3Encoder
from m3rag.index.index import M3Index
from m3rag.scoring import colbert_scores_flat

__all__ = ["Fidelity", "compare_encoders", "dense_cosines"]

T = TypeVar("T")


class Fidelity(TypedDict):
    dense_cosine_mean: float
    dense_cosine_worst: float
    lexical_rel_error_mean: float
    """Per text: L1 distance of the weight vectors / L1 norm of the fp32 weights."""
    lexical_rel_error_p95: float
    lexical_abs_error_worst: float
    """Largest absolute difference of one token's weight."""
    colbert_score_error_mean: float
    """Absolute ColBERT score difference over query x document pairs."""
    colbert_score_error_worst: float
    top10_dense: float
    """Mean overlap of the top-10 ids with the reference's, per search mode."""
    top10_sparse: float
    top10_hybrid: float


def compare_encoders(reference: M3Encoder, candidate: M3Encoder, docs: Sequence[str], queries: Sequence[str], k: int = 10) -> Fidelity:
    """Encode ``docs`` and ``queries`` with both encoders and measure the candidate's drift."""
    kw = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
    ref, cand = reference.encode(list(docs), **kw), candidate.encode(list(docs), **kw)
    ref_dense, cand_dense = _given(ref.dense), _given(cand.dense)
    ref_sparse, cand_sparse = _given(ref.sparse), _given(cand.sparse)
    cos = dense_cosines(ref_dense, cand_dense)
    diff = abs(ref_sparse - cand_sparse).sum(axis=1)
    norm = np.maximum(abs(ref_sparse).sum(axis=1), 1e-12)
    lexical = np.asarray(diff).ravel() / np.asarray(norm).ravel()

    q_ref, q_cand = reference.encode_queries(list(queries), **kw), candidate.encode_queries(list(queries), **kw)
    ref_flat, ref_offsets = _given(ref.colbert), _given(ref.colbert_offsets)
    cand_flat, cand_offsets = _given(cand.colbert), _given(cand.colbert_offsets)
    errors = np.concatenate(
        [
            np.abs(colbert_scores_flat(qr, ref_flat, ref_offsets) - colbert_scores_flat(qc, cand_flat, cand_offsets))
            for qr, qc in zip(_given(q_ref.colbert_vecs), _given(q_cand.colbert_vecs))
        ]
    )

    overlap: dict[str, list[float]] = {"dense": [], "sparse": [], "hybrid": []}
    indexes = []
    for encoder in (reference, candidate):
        index = M3Index(encoder, store_colbert=False)
        index.add(list(docs))
        indexes.append(index)
    for mode, values in overlap.items():
        ref_hits = indexes[0].search_batch(list(queries), k, mode=mode)  # type: ignore[arg-type]
        cand_hits = indexes[1].search_batch(list(queries), k, mode=mode)  # type: ignore[arg-type]
        ids = dict(zip(indexes[0].ids, indexes[1].ids))  # same order of insertion
        for a, b in zip(ref_hits, cand_hits):
            expected = {ids[h.id] for h in a}
            if expected:
                values.append(len(expected & {h.id for h in b}) / len(expected))
    return Fidelity(
        dense_cosine_mean=float(cos.mean()),
        dense_cosine_worst=float(cos.min()),
        lexical_rel_error_mean=float(lexical.mean()),
        lexical_rel_error_p95=float(np.quantile(lexical, 0.95)),
        lexical_abs_error_worst=float(abs(ref_sparse - cand_sparse).max()),
        colbert_score_error_mean=float(errors.mean()),
        colbert_score_error_worst=float(errors.max()),
        top10_dense=float(np.mean(overlap["dense"])),
        top10_sparse=float(np.mean(overlap["sparse"])),
        top10_hybrid=float(np.mean(overlap["hybrid"])),
    )


def dense_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise cosine ``float64 [n]`` of two ``[n, d]`` arrays (1.0 for identical directions)."""
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    cosines: np.ndarray = (ref * cand).sum(axis=1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-300)
    return cosines


def _given(value: T | None) -> T:
    """An output that was asked for (never ``None`` here)."""
    if value is None:
        raise RuntimeError("an encoder output that was asked for is missing")
    return value
