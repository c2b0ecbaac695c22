from __future__ import annotations

import itertools

import numpy as np
import pytest

from m3rag.encoder.batching import plan_batches


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_every_text_once_within_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 600, size=int(rng.integers(1, 300)))
    batches = plan_batches(lengths, batch_size=32, batch_tokens=2048)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= 32
        assert len(batch) * lengths[batch].max() <= 2048 or len(batch) == 1
    # longest first: each batch's longest text is no longer than the previous batch's shortest
    for prev, cur in itertools.pairwise(batches):
        assert lengths[cur].max() <= lengths[prev].min()


def test_text_longer_than_budget_gets_its_own_batch() -> None:
    batches = plan_batches([10, 5000, 10], batch_size=8, batch_tokens=1024)
    assert [b.tolist() for b in batches] == [[1], [0, 2]]


def test_empty() -> None:
    assert plan_batches([], batch_size=8, batch_tokens=1024) == []
