"""ColBERT segments in every storage dtype, and the rerank kernel that scores straight from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from m3rag import M3Encoder, M3Index, scoring
from m3rag.stores.local.colbert import COLBERT_DTYPES, ColbertStore, from_bfloat16_bits, quantize_int8, to_bfloat16_bits
from tests.helpers import DOCS, IDS, QUERIES

# Worst absolute score error against float32 on unit vectors (tiny: 64-d, bge-m3: 1024-d), with margin.
ERROR = {("float32", "float32"): 1e-6, ("float16", "float32"): 1e-4, ("bfloat16", "float32"): 5e-4, ("bfloat16", "bfloat16"): 1e-3,
         ("int8", "float32"): 1.5e-3, ("int8", "int8"): 2e-3}  # fmt: skip


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _corpus(d: int, low: int, high: int, n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high, size=n)
    lengths[7] = 0  # a document with no rows scores 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return _unit(rng, int(offsets[-1]), d), offsets


def _filled(kind: str, flat: np.ndarray, offsets: np.ndarray) -> ColbertStore:
    """Two segments, the documents split between them."""
    store = ColbertStore(flat.shape[1], kind)
    cut = len(offsets) // 2
    store.add(flat[: offsets[cut]], offsets[: cut + 1])
    store.add(flat[offsets[cut] :], offsets[cut:] - offsets[cut])
    return store


def _computes(kind: str) -> list[str]:
    return ["float32", kind] if kind in ("bfloat16", "int8") else ["float32"]


@pytest.mark.parametrize("kind", COLBERT_DTYPES)
@pytest.mark.parametrize(("d", "low", "high"), [(64, 1, 90), (256, 60, 200)])  # short documents go through blocks, long ones in place
def test_scores_from_the_store_agree_with_float32(kind: str, d: int, low: int, high: int) -> None:
    flat, offsets = _corpus(d, low, high)
    store = _filled(kind, flat, offsets)
    rng = np.random.default_rng(1)
    rows = np.append(rng.permutation(len(offsets) - 1)[:30], 7)
    query = _unit(rng, 24, d)
    reference = scoring.colbert_scores_flat(query, flat, offsets)[rows]
    stored, stored_offsets = store.gather(rows)
    for compute in _computes(kind):
        got = store.scores(query, rows, compute)  # type: ignore[arg-type]
        assert got.dtype == np.float64 and got.shape == (len(rows),) and got[-1] == 0.0
        assert np.abs(got - reference).max() < ERROR[kind, compute], (kind, compute)
        if compute == "float32":  # exact on the values the store holds
            np.testing.assert_allclose(got, scoring.colbert_scores_flat(query, stored, stored_offsets), atol=1e-6)
    assert store.scores(query, rows[:0]).shape == (0,)
    assert not store.scores(query[:0], rows).any()


def _related_query(rng: np.random.Generator, flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray, tokens: int) -> np.ndarray:
    """Query tokens near tokens of some candidates (closer for earlier ones): scores spread the way
    a real query's do, instead of the near-ties of unrelated random vectors."""
    picks = []
    for rank, doc in enumerate(rows[:20].tolist()):
        span = flat[offsets[doc] : offsets[doc + 1]]
        if len(span) and len(picks) < tokens:
            picks.append(span[rng.integers(len(span))] + (0.3 + 0.05 * rank) * _unit(rng, 1, flat.shape[1])[0])
    q = np.vstack([*picks, _unit(rng, tokens - len(picks), flat.shape[1])]) if len(picks) < tokens else np.vstack(picks)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["bfloat16", "int8"])
def test_low_precision_keeps_the_top_10(kind: str) -> None:
    flat, offsets = _corpus(128, 20, 120, n=200, seed=3)
    store = _filled(kind, flat, offsets)
    rng = np.random.default_rng(4)
    agree = []
    for _ in range(10):
        rows = rng.permutation(200)[:100]
        query = _related_query(rng, flat, offsets, rows, 16)
        exact = scoring.colbert_scores_flat(query, flat, offsets)[rows]
        fast = store.scores(query, rows, kind)  # type: ignore[arg-type]
        agree.append(len(set(scoring.top_k(exact, 10).tolist()) & set(scoring.top_k(fast, 10).tolist())) / 10)
    assert np.mean(agree) >= 0.99


def test_conversions_round_trip() -> None:
    x = np.array([[1.0, -2.5, 3.1415927, 1e-3, 0.0, -0.0]], dtype=np.float32)
    bits = to_bfloat16_bits(x)
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(from_bfloat16_bits(bits)[0, :3], [1.0, -2.5, 3.140625])  # nearest bf16
    np.testing.assert_array_equal(to_bfloat16_bits(from_bfloat16_bits(bits)), bits)
    values, scales = quantize_int8(np.vstack([x, np.zeros_like(x)]))
    assert values[0].tolist() == [40, -101, 127, 0, 0, 0] and scales[1] == 0 and values[1].tolist() == [0] * 6


@pytest.mark.parametrize("kind", COLBERT_DTYPES)
def test_compacted_and_kept_stores_hold_the_same_bits(kind: str) -> None:
    flat, offsets = _corpus(32, 0, 9)
    store = _filled(kind, flat, offsets)
    store.keep(np.arange(len(store))[::-1][::2])
    compact = store.compacted()
    assert len(compact.segments) == 1 and compact.kind == kind
    np.testing.assert_array_equal(compact.gather_stored(np.arange(len(compact)))[0], store.gather_stored(np.arange(len(store)))[0])


def test_a_wrong_compute_is_refused() -> None:
    store = _filled("float16", *_corpus(16, 1, 5))
    with pytest.raises(ValueError, match="float32 or float16"):
        store.scores(np.ones((2, 16), np.float32), np.arange(3), "int8")


@pytest.mark.parametrize("kind", ["bfloat16", "int8"])
def test_an_index_saved_with_a_low_precision_store_loads_and_ranks_alike(kind: str, encoder: M3Encoder, tmp_path: Path) -> None:
    exact = M3Index(encoder, colbert_dtype="float32")
    low = M3Index(encoder, colbert_dtype=kind)  # type: ignore[arg-type]
    for index in (exact, low):
        index.add(DOCS[:60], ids=IDS[:60])
    low.save(tmp_path / "i")
    loaded = M3Index.load(tmp_path / "i", encoder)
    assert loaded.store.colbert_dtype == kind and f"{kind} ColBERT" in repr(loaded)  # type: ignore[attr-defined]
    for query in QUERIES:
        a, b, c = (index.search(query, k=5, rerank="colbert") for index in (exact, low, loaded))
        assert [h.id for h in b] == [h.id for h in c] and [h.score for h in b] == [h.score for h in c]
        np.testing.assert_allclose([h.scores["colbert"] for h in a], [h.scores["colbert"] for h in b], atol=5e-3)
