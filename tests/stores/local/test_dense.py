"""The flat dense store: exact top-k by the float64 score, identical alone or in a batch."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from m3rag import M3Encoder, M3Index
from m3rag.stores.local.dense import DenseStore
from tests.helpers import DOCS, IDS, METAS, QUERIES


def _data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[[100, 200]] = x[50]  # exact ties: the lower row first
    q = (x[rng.integers(0, n, 20)] + 0.3 * rng.standard_normal((20, d))).astype(np.float32)
    q[0] = x[50]
    return x, q


@pytest.mark.parametrize(("n", "d"), [(3000, 32), (5000, 256)])
@pytest.mark.parametrize("filtered", [False, True])
def test_flat_search_is_the_exact_top_k_alone_or_batched(n: int, d: int, filtered: bool) -> None:
    x, q = _data(n, d)
    store = DenseStore(d, "flat")
    store.add(x[: n // 3])
    store.add(x[n // 3 :])
    allowed = np.random.default_rng(1).random(n) < 0.3 if filtered else None
    if allowed is not None:
        allowed[[50, 100, 200]] = True
    scores, rows = store.search(q, 10, allowed)
    exact = q.astype(np.float64) @ x.T.astype(np.float64)
    if allowed is not None:
        exact[:, ~allowed] = -np.inf
    for i in range(len(q)):
        alone = store.search(q[i : i + 1], 10, allowed)
        assert np.array_equal(alone[1][0], rows[i]) and np.array_equal(alone[0][0], scores[i])
        assert rows[i].tolist() == np.lexsort((np.arange(n), -exact[i]))[:10].tolist()
        np.testing.assert_allclose(scores[i], exact[i, rows[i]], rtol=1e-6)
    assert rows[0][:3].tolist() == [50, 100, 200]
    reference = faiss.IndexFlatIP(d)
    reference.add(x)
    if allowed is None:  # the same top-k scores as faiss's own search
        np.testing.assert_allclose(np.sort(reference.search(q, 10)[0], axis=1), np.sort(scores, axis=1), atol=1e-5)


def test_fewer_allowed_than_k_and_empty_store() -> None:
    x, q = _data(2000, 16)
    store = DenseStore(16, "flat")
    assert store.search(q[:2], 5, None)[1].tolist() == [[-1] * 5] * 2
    store.add(x)
    few = np.zeros(2000, dtype=bool)
    few[[3, 1999]] = True
    scores, rows = store.search(q[:2], 5, few)
    assert sorted(rows[0][:2].tolist()) == [3, 1999] and rows[0][2:].tolist() == [-1, -1, -1]
    assert (scores[:, 2:] == -np.finfo(np.float32).max).all()
    assert store.search(q[:2], 5, np.zeros(2000, dtype=bool))[1].tolist() == [[-1] * 5] * 2


def test_search_batch_equals_single_searches(encoder: M3Encoder) -> None:
    index = M3Index(encoder, colbert_dtype="float32")
    index.add(DOCS, ids=IDS, metadatas=METAS)
    for kwargs in (
        dict(mode="dense"),
        dict(mode="dense", filter={"lang": "fr"}),
        dict(mode="hybrid", rerank="colbert"),
        dict(mode="sparse"),
    ):
        batch = index.search_batch(QUERIES, k=7, **kwargs)  # type: ignore[arg-type]
        for query, hits in zip(QUERIES, batch):
            alone = index.search(query, k=7, **kwargs)  # type: ignore[arg-type]
            assert [h.id for h in alone] == [h.id for h in hits]
            np.testing.assert_allclose([h.score for h in alone], [h.score for h in hits], rtol=1e-6, atol=1e-7)
