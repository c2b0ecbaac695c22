"""Every search mode equals a brute-force computation from the encoder's own outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder, M3Index, scoring
from tests.helpers import DOCS, IDS, METAS, QUERIES

W = {"dense": 1.0, "sparse": 0.3, "colbert": 1.0}


@pytest.fixture(scope="module")
def brute(encoder: M3Encoder) -> dict[str, Any]:
    docs = encoder.encode_corpus(DOCS, return_sparse=True, return_colbert_vecs=True)
    queries = encoder.encode_queries(QUERIES, return_sparse=True, return_colbert_vecs=True)
    return {
        "dense": queries.dense.astype(np.float64) @ docs.dense.T.astype(np.float64),
        "sparse": np.array([[sum(w * d.get(t, 0.0) for t, w in q.items()) for d in docs.lexical_weights] for q in queries.lexical_weights]),
        "q_colbert": queries.colbert_vecs,
        "d_colbert": docs.colbert_vecs,
    }


def _order(scores: np.ndarray, rows: np.ndarray, k: int) -> list[int]:
    """Rows sorted by score desc, ties by row; first k."""
    return [int(rows[i]) for i in sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i]))[:k]]


def _expected(
    brute: dict[str, Any],
    qi: int,
    k: int,
    mode: str,
    fusion: str = "weighted",
    rerank: str | None = None,
    allowed: np.ndarray | None = None,
    colbert_round: bool = False,
) -> list[tuple[int, float]]:
    n = len(DOCS)
    allowed = np.ones(n, dtype=bool) if allowed is None else allowed
    d, s = brute["dense"][qi], brute["sparse"][qi]
    rows_all = np.flatnonzero(allowed)
    dense_list = _order(d[rows_all], rows_all, n)
    sparse_rows = rows_all[s[rows_all] > 0]
    sparse_list = _order(s[sparse_rows], sparse_rows, n)
    if mode == "dense":
        rows, fused = np.array(dense_list), d[dense_list]
    elif mode == "sparse":
        rows, fused = np.array(sparse_list), s[sparse_list]
    else:
        rows = np.array(sorted(set(dense_list) | set(sparse_list)))
        if fusion == "weighted":
            fused = (W["dense"] * d[rows] + W["sparse"] * s[rows]) / (W["dense"] + W["sparse"])
        else:
            rank = lambda lst: {r: i + 1 for i, r in enumerate(lst)}  # noqa: E731
            rd, rs = rank(dense_list), rank(sparse_list)
            fused = np.array([(W["dense"] / (60 + rd[r]) if r in rd else 0) + (W["sparse"] / (60 + rs[r]) if r in rs else 0) for r in rows])
    depth = k if rerank is None else len(rows)
    first = _order(fused, rows, depth)
    if rerank is None:
        score_of = dict(zip(rows.tolist(), fused))
        return [(r, score_of[r]) for r in first]
    q = brute["q_colbert"][qi]
    c = {
        r: scoring.colbert_score(q, brute["d_colbert"][r].astype(np.float16).astype(np.float32) if colbert_round else brute["d_colbert"][r])
        for r in first
    }
    if rerank == "colbert":
        final = {r: c[r] for r in first}
    else:
        final = {r: (W["dense"] * d[r] + W["sparse"] * s[r] + W["colbert"] * c[r]) / sum(W.values()) for r in first}
    order = _order(np.array([final[r] for r in first]), np.array(first), k)
    return [(r, final[r]) for r in order]


def _check(hits: list[Any], expected: list[tuple[int, float]]) -> None:
    assert [h.id for h in hits] == [IDS[r] for r, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
@pytest.mark.parametrize("rerank", [None, "colbert", "hybrid"])
def test_modes_equal_brute_force(index: M3Index, brute: dict[str, Any], mode: str, rerank: str | None) -> None:
    for qi, query in enumerate(QUERIES):
        hits = index.search(query, k=7, mode=mode, rerank=rerank, candidates=len(DOCS))  # type: ignore[arg-type]
        _check(hits, _expected(brute, qi, 7, mode, rerank=rerank))


def test_rrf_fusion_equals_brute_force(index: M3Index, brute: dict[str, Any]) -> None:
    for qi, query in enumerate(QUERIES):
        _check(index.search(query, k=10, fusion="rrf", candidates=len(DOCS)), _expected(brute, qi, 10, "hybrid", "rrf"))


def test_hits_carry_text_metadata_and_each_modes_score(index: M3Index, brute: dict[str, Any]) -> None:
    hit = index.search(QUERIES[0], k=1, rerank="colbert", candidates=len(DOCS))[0]
    r = IDS.index(hit.id)
    assert hit.text == DOCS[r] and hit.metadata == METAS[r]
    assert hit.scores["dense"] == pytest.approx(brute["dense"][0, r], abs=1e-5)
    assert hit.scores["sparse"] == pytest.approx(brute["sparse"][0, r], abs=1e-5)
    assert hit.scores["colbert"] == pytest.approx(hit.score, abs=1e-12)


def test_search_batch_equals_single_searches(index: M3Index) -> None:
    batch = index.search_batch(QUERIES, k=5, mode="hybrid", rerank="colbert")
    for query, hits in zip(QUERIES, batch):
        single = index.search(query, k=5, mode="hybrid", rerank="colbert")
        assert [h.id for h in hits] == [h.id for h in single]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in single], atol=1e-6)


def test_filter_applies_before_top_k(index: M3Index, brute: dict[str, Any]) -> None:
    allowed = np.array([m["lang"] == "fr" and m["even"] for m in METAS])
    for mode in ("dense", "sparse", "hybrid"):
        hits = index.search(QUERIES[2], k=5, mode=mode, filter={"lang": "fr", "even": True}, candidates=len(DOCS))  # type: ignore[arg-type]
        assert all(h.metadata["lang"] == "fr" and h.metadata["even"] for h in hits)
        _check(hits, _expected(brute, 2, 5, mode, allowed=allowed))
    assert index.search(QUERIES[0], filter={"lang": "xx"}) == []
    assert index.search(QUERIES[0], filter={"missing": 1}) == []


def test_weights_change_the_fusion(index: M3Index, brute: dict[str, Any]) -> None:
    sparse_only = index.search(QUERIES[1], k=5, weights=[0.0, 1.0, 1.0], candidates=len(DOCS))
    top_sparse = _order(brute["sparse"][1], np.arange(len(DOCS)), 5)
    assert [h.id for h in sparse_only] == [IDS[r] for r in top_sparse]


def test_k_larger_than_the_index(index: M3Index) -> None:
    assert len(index.search(QUERIES[0], k=10_000, mode="dense")) == len(DOCS)


def test_fp16_colbert_store_equals_brute_force_on_stored_vectors(encoder: M3Encoder, brute: dict[str, Any]) -> None:
    idx = M3Index(encoder)  # float16 by default
    idx.add(DOCS, ids=IDS, metadatas=METAS)
    for qi, query in enumerate(QUERIES):
        hits = idx.search(query, k=5, rerank="colbert", candidates=len(DOCS))
        _check(hits, _expected(brute, qi, 5, "hybrid", rerank="colbert", colbert_round=True))


def test_recomputed_colbert_equals_stored(index: M3Index, encoder: M3Encoder) -> None:
    idx = M3Index(encoder, store_colbert=False)
    idx.add(DOCS, ids=IDS, metadatas=METAS)
    for query in QUERIES:
        a = index.search(query, k=5, rerank="hybrid")
        b = idx.search(query, k=5, rerank="hybrid")
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)


def test_hnsw_recall_against_flat(encoder: M3Encoder, index: M3Index) -> None:
    hnsw = M3Index(encoder, dense_index="hnsw")
    hnsw.add(DOCS, ids=IDS)
    recall = []
    for query in QUERIES:
        exact = {h.id for h in index.search(query, k=10, mode="dense")}
        approx = {h.id for h in hnsw.search(query, k=10, mode="dense")}
        recall.append(len(exact & approx) / 10)
    assert np.mean(recall) >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(k=0), InputValueError),
        (dict(k=-1), InputValueError),
        (dict(k=2.0), InputTypeError),
        (dict(mode="bm25"), InputValueError),
        (dict(fusion="max"), InputValueError),
        (dict(rerank="cross"), InputValueError),
        (dict(candidates=0), InputValueError),
        (dict(weights=[1, 2]), InputTypeError),
        (dict(weights=[1, -1, 1]), InputValueError),
        (dict(filter=["lang"]), InputTypeError),
    ],
)
def test_bad_search_arguments(index: M3Index, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        index.search(QUERIES[0], **kwargs)


def test_bad_queries(index: M3Index) -> None:
    with pytest.raises(InputTypeError):
        index.search(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        index.search_batch("one query")
    assert index.search_batch([]) == []


def test_empty_index_returns_nothing(encoder: M3Encoder) -> None:
    idx = M3Index(encoder)
    assert len(idx) == 0 and idx.ids == []
    assert idx.search("anything") == [] and idx.search_batch(["a", "b"], rerank="colbert") == [[], []]


def test_exact_ties_go_to_insertion_order(encoder: M3Encoder) -> None:
    idx = M3Index(encoder)
    idx.add([*DOCS[:20], DOCS[7], DOCS[7]], ids=[*IDS[:20], "dup-a", "dup-b"])
    for mode in ("dense", "sparse", "hybrid"):
        for rerank in (None, "colbert"):
            hits = idx.search(DOCS[7], k=3, mode=mode, rerank=rerank)  # type: ignore[arg-type]
            assert [h.id for h in hits] == ["doc-7", "dup-a", "dup-b"], (mode, rerank)
