from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from m3rag.stores.local.sparse import SparseStore


def _random(rng: np.random.Generator, n: int, vocab: int) -> sp.csr_array:
    m = sp.random(n, vocab, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    return sp.csr_array(m)


def test_scores_equal_a_plain_product_across_base_and_tail() -> None:
    rng = np.random.default_rng(0)
    vocab = 500
    base = _random(rng, 3000, vocab)
    store = SparseStore(vocab, base)
    chunks = [_random(rng, int(rng.integers(1, 40)), vocab) for _ in range(30)]
    queries = _random(rng, 4, vocab)
    for i, chunk in enumerate(chunks):
        store.add(chunk)
        if i % 7 == 0:
            full = sp.vstack([base, *chunks[: i + 1]])
            assert store._tail  # scored from base + tail, not merged
            np.testing.assert_allclose(store.scores(queries), (queries @ full.T).toarray(), atol=1e-5)
    assert len(store) == 3000 + sum(c.shape[0] for c in chunks)
    assert (store.matrix != sp.vstack([base, *chunks])).nnz == 0 and store._tail == []  # .matrix merges


def test_tail_is_merged_when_it_grows() -> None:
    rng = np.random.default_rng(1)
    store = SparseStore(100, _random(rng, 10, 100))
    for _ in range(30):
        store.add(_random(rng, 50, 100))
    assert sum(c.shape[0] for c in store._tail) <= max(1024, store._base.shape[0] // 8)
    assert len(store) == 10 + 30 * 50
