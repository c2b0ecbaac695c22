"""Comparing a store's search results with the local store's, and counting a client's requests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import product
from typing import Any

import pytest

from m3rag import M3Index, SearchHit

PLANS = [
    dict(mode=mode, fusion=fusion, rerank=rerank)
    for mode, fusion, rerank in product(("dense", "sparse", "hybrid"), ("weighted", "rrf"), (None, "colbert", "hybrid"))
]
"""Every mode x fusion x rerank combination (fusion only changes hybrid searches; all are run)."""
FILTERS = [None, {"lang": "fr", "even": True}, {"n": 7.0}]
FLOAT32_TIE = 2.0**-23
"""Scores within this relative distance are equal at float32 precision, the precision of the
scores Qdrant computes server-side: their order is the engine's (it cannot break ties)."""
EXTRA = 20
"""The reference is asked for this many hits beyond k, to see ties across the k-th place."""


def _tied(a: float, b: float, tie: float) -> bool:
    return abs(a - b) <= tie * max(abs(a), abs(b))


def assert_same_hits(expected: list[SearchHit], got: list[SearchHit], k: int, *, tie: float = 0.0, atol: float = 1e-4) -> None:
    """``got`` (a store's top ``k``) equals ``expected`` (the local store's top ``k + EXTRA``):
    the same ids in the same order, text, metadata, final and per-mode scores within ``atol``.
    Ids may differ only among tied documents, tied within ``tie`` (relative; 0 = not at all):
    the store's document at that place has the local one's final score, or the same score in
    every mode (duplicates, whose RRF ranks among themselves are the engine's choice)."""
    reference = expected[:k]
    assert len(got) == len(reference), f"{len(got)} hits, the local store has {len(reference)}"
    assert len({h.id for h in got}) == len(got), "a document came back twice"
    by_id = {h.id: h for h in expected}
    for j, (want, hit) in enumerate(zip(reference, got)):
        assert hit.score == pytest.approx(want.score, abs=atol), f"place {j}: score {hit.score} vs local {want.score}"
        assert hit.id in by_id, f"place {j}: {hit.id!r} is not among the local store's best {len(expected)}"
        same = by_id[hit.id]
        if hit.id != want.id:
            alike = _tied(same.score, want.score, tie) or all(_tied(same.scores[m], want.scores[m], tie) for m in want.scores)
            assert tie > 0 and alike, f"place {j}: {hit.id!r} where the local store has {want.id!r} (not a tie)"
        assert (hit.text, hit.metadata) == (same.text, same.metadata)
        assert set(hit.scores) == set(same.scores), f"{hit.id}: modes {sorted(hit.scores)} vs local {sorted(same.scores)}"
        for mode, value in same.scores.items():
            assert hit.scores[mode] == pytest.approx(value, abs=atol), f"{hit.id}: {mode} score {hit.scores[mode]} vs local {value}"


def compare(local: M3Index, store: M3Index, queries: list[str], k: int, *, tie: float = 0.0, **plan: Any) -> None:
    """``store.search_batch`` equals ``local``'s for every query. The local store is asked for
    more hits, with the same first stage (a fused or reranked search keeps ``candidates``)."""
    candidates = max(plan.pop("candidates", None) or max(k, 100), k)
    deeper = k + EXTRA if plan.get("mode", "hybrid") != "hybrid" and plan.get("rerank") is None else min(k + EXTRA, candidates)
    expected = local.search_batch(queries, deeper, candidates=candidates, **plan)
    for want, got in zip(expected, store.search_batch(queries, k, candidates=candidates, **plan)):
        assert_same_hits(want, got, k, tie=tie)


class CountingClient:
    """A client whose public method calls are recorded by name (each is at least one request)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return value(*args, **kwargs)

        return call


@contextmanager
def counting(store: Any) -> Iterator[list[str]]:
    """The store's client calls while the block runs."""
    client = CountingClient(store.client)
    store.client = client
    try:
        yield client.calls
    finally:
        store.client = client._inner


def faulty(method: Callable[..., Any], fail_on: int, error: BaseException) -> Callable[..., Any]:
    """``method``, except that its ``fail_on``-th call raises ``error`` instead."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == fail_on:
            raise error
        return method(*args, **kwargs)

    return call
