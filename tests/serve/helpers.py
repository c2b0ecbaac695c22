"""Comparisons of remote and local results."""

from __future__ import annotations

from typing import Any

import numpy as np

from m3rag import M3Item, M3Output

ATOL = 1e-6
"""Remote equals local up to float rounding of a different batch shape (coalescing)."""


def assert_same_output(remote: M3Output, local: M3Output, atol: float = ATOL) -> None:
    assert isinstance(remote, M3Output) and len(remote) == len(local)
    np.testing.assert_array_equal(remote.num_tokens, local.num_tokens)
    np.testing.assert_array_equal(remote.truncated, local.truncated)
    for key in ("dense", "colbert"):
        a, b = getattr(remote, key), getattr(local, key)
        assert (a is None) == (b is None), key
        if a is not None:
            assert a.dtype == np.float32 and a.shape == b.shape, key
            np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=key)
    assert (remote.colbert_offsets is None) == (local.colbert_offsets is None)
    if local.colbert_offsets is not None:
        np.testing.assert_array_equal(remote.colbert_offsets, local.colbert_offsets)  # type: ignore[arg-type]
    assert (remote.sparse is None) == (local.sparse is None)
    if local.sparse is not None and remote.sparse is not None:
        assert remote.sparse.shape == local.sparse.shape and remote.sparse.dtype == np.float32
        diff = abs(remote.sparse - local.sparse)
        assert diff.nnz == 0 or diff.max() <= atol


def assert_same_item(remote: M3Item, local: M3Item, atol: float = ATOL) -> None:
    assert isinstance(remote, M3Item)
    assert remote.num_tokens == local.num_tokens and remote.truncated == local.truncated
    for key in ("dense_vecs", "colbert_vecs"):
        a, b = getattr(remote, key), getattr(local, key)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    assert_same_weights(remote.lexical_weights, local.lexical_weights, atol)


def assert_same_weights(a: Any, b: Any, atol: float = ATOL) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        keys = set(a) | set(b)
        assert all(abs(a.get(k, 0.0) - b.get(k, 0.0)) <= atol for k in keys)
