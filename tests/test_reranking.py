from __future__ import annotations

import numpy as np
import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder, rerank, scoring
from m3rag.scoring import DEFAULT_WEIGHTS, resolve_weights
from m3rag.testing import SAMPLE_TEXTS

PASSAGES = list(SAMPLE_TEXTS[10:40])
QUERY = SAMPLE_TEXTS[12][:40]


def test_colbert_rerank_equals_pairwise_colbert_scores(encoder: M3Encoder) -> None:
    q = encoder.encode_queries(QUERY, return_colbert_vecs=True)
    p = encoder.encode_corpus(PASSAGES, return_colbert_vecs=True)
    expected = np.array([encoder.colbert_score(q.colbert_vecs, v) for v in p.colbert_vecs])
    got = rerank(encoder, QUERY, PASSAGES)
    assert [r.index for r in got] == sorted(range(len(PASSAGES)), key=lambda i: (-expected[i], i))
    np.testing.assert_allclose([r.score for r in got], np.sort(expected)[::-1], atol=1e-5)


def test_hybrid_rerank_is_m3s_weighted_sum(encoder: M3Encoder) -> None:
    weights = [0.4, 0.2, 0.4]
    pairs = [(QUERY, p) for p in PASSAGES]
    ref = encoder.compute_score(pairs, weights_for_different_modes=weights, max_query_length=512)
    got = rerank(encoder, QUERY, PASSAGES, mode="hybrid", weights=weights, top_n=5)
    assert len(got) == 5
    for r in got:
        assert r.score == pytest.approx(ref["colbert+sparse+dense"][r.index], abs=1e-5)
        assert r.scores["dense"] == pytest.approx(ref["dense"][r.index], abs=1e-5)
        assert r.scores["sparse"] == pytest.approx(ref["sparse"][r.index], abs=1e-5)
    np.testing.assert_allclose([r.score for r in got], sorted(ref["colbert+sparse+dense"], reverse=True)[:5], atol=1e-5)


def test_flat_colbert_scores_equal_padded_ones() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    passages = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 1, 9, 4)]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in passages])])
    np.testing.assert_allclose(
        scoring.colbert_scores_flat(q, np.concatenate(passages), offsets), scoring.colbert_scores(q, passages), atol=1e-6
    )
    empty_offsets = np.array([0, 0, 3])
    got = scoring.colbert_scores_flat(q, passages[0], empty_offsets)
    assert got[0] == 0.0 and got[1] == pytest.approx(scoring.colbert_score(q, passages[0]), abs=1e-6)


def test_empty_and_bad_input(encoder: M3Encoder) -> None:
    assert rerank(encoder, "q", []) == []
    with pytest.raises(InputValueError):
        rerank(encoder, "q", ["a"], mode="dense")  # type: ignore[arg-type]
    with pytest.raises(InputValueError):
        rerank(encoder, "q", ["a"], top_n=0)
    with pytest.raises(InputTypeError):
        rerank(encoder, None, ["a"])  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        rerank(encoder, "q", ["a", 3])  # type: ignore[list-item]


def test_weights_forms() -> None:
    assert resolve_weights(None) == DEFAULT_WEIGHTS
    assert resolve_weights({"sparse": 1.0}) == {"dense": 1.0, "sparse": 1.0, "colbert": 1.0}
    assert resolve_weights([0.1, 0.2, 0.3]) == {"dense": 0.1, "sparse": 0.2, "colbert": 0.3}
    with pytest.raises(InputValueError):
        resolve_weights({"bm25": 1.0})


def test_top_k_ties_go_to_the_lower_index() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    assert scoring.top_k(scores, 3).tolist() == [1, 3, 0]
    assert scoring.top_k(scores, 10).tolist() == [1, 3, 0, 2, 4]
    assert scoring.top_k(scores, 0).tolist() == []
