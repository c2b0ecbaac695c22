"""M3Index's cross-encoder stage: hybrid first stage, then a bge-reranker over the top candidates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from m3rag import BGEReranker, InputTypeError, M3Index
from m3rag.index import RERANKER_SCORE
from tests.helpers import QUERIES


class Spy:
    """A reranker that records its calls and delegates to a BGEReranker."""

    def __init__(self, inner: BGEReranker) -> None:
        self.inner, self.name = inner, inner.name
        self.calls: list[list[tuple[str, str]]] = []

    def compute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        self.calls.append(list(sentence_pairs))
        return self.inner.compute_score(sentence_pairs, batch_size, max_length, normalize)

    async def acompute_score(
        self, sentence_pairs: Any, batch_size: int | None = None, max_length: int | None = None, normalize: bool | None = None
    ) -> list[float]:
        self.calls.append(list(sentence_pairs))
        return await self.inner.acompute_score(sentence_pairs, batch_size, max_length, normalize)


@pytest.fixture(scope="module")
def reranker(reranker_checkpoint: Path) -> BGEReranker:
    return BGEReranker(reranker_checkpoint, device="cpu")


@pytest.mark.parametrize("first", [{}, {"mode": "dense"}, {"rerank": "colbert"}, {"fusion": "rrf", "filter": {"even": True}}])
def test_reranked_hits_are_the_first_stages_top_candidates_rescored(index: M3Index, reranker: BGEReranker, first: dict[str, Any]) -> None:
    query = QUERIES[2]
    candidates = index.search(query, 12, candidates=12, **first)  # the first stage: its top 12
    scores = reranker.compute_score([(query, h.text) for h in candidates])
    expected = sorted(zip(candidates, scores), key=lambda hs: -hs[1])[:4]
    got = index.search(query, 4, candidates=12, reranker=reranker, **first)
    assert [h.id for h in got] == [h.id for h, _ in expected]
    for hit, (before, score) in zip(got, expected):
        assert hit.score == pytest.approx(score) and hit.scores[RERANKER_SCORE] == pytest.approx(score)
        assert {k: v for k, v in hit.scores.items() if k != RERANKER_SCORE} == pytest.approx(before.scores)  # first-stage scores kept
        assert (hit.text, hit.metadata) == (before.text, before.metadata)


def test_one_cross_encoder_call_per_batch_and_blank_queries(index: M3Index, reranker: BGEReranker) -> None:
    spy = Spy(reranker)
    queries = [QUERIES[0], "   ", QUERIES[1]]
    results = index.search_batch(queries, 3, candidates=5, reranker=spy)
    assert len(spy.calls) == 1 and len(spy.calls[0]) == 10  # 5 candidates of each non-blank query, one call
    assert [len(r) for r in results] == [3, 0, 3]
    alone = index.search(queries[0], 3, candidates=5, reranker=reranker)
    assert [h.id for h in results[0]] == [h.id for h in alone] and [h.score for h in results[0]] == pytest.approx([h.score for h in alone])
    assert index.search("", reranker=spy) == [] and len(spy.calls) == 1
    assert len(index.search(QUERIES[0], 3, reranker=spy)) == 3 and len(spy.calls[-1]) == 100  # default candidates: max(k, 100)


def test_async_matches_sync(index: M3Index, reranker: BGEReranker) -> None:
    spy = Spy(reranker)
    sync = index.search_batch(QUERIES[:3], 4, candidates=10, reranker=reranker)
    got = asyncio.run(index.asearch_batch(QUERIES[:3], 4, candidates=10, reranker=spy))
    assert [[h.id for h in r] for r in got] == [[h.id for h in r] for r in sync]
    assert len(spy.calls) == 1
    one = asyncio.run(index.asearch(QUERIES[0], 4, candidates=10, reranker=reranker))
    assert [h.id for h in one] == [h.id for h in sync[0]]


def test_bad_reranker(index: M3Index) -> None:
    with pytest.raises(InputTypeError, match="reranker must be a BGEReranker"):
        index.search(QUERIES[0], reranker="BAAI/bge-reranker-v2-m3")  # type: ignore[arg-type]
