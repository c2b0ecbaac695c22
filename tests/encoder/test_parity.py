"""m3rag equals FlagEmbedding's BGEM3FlagModel (fp32, live) on the same checkpoint and texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import M3Encoder
from tests.reference import reference

ATOL = 1e-5
pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("ignore::m3rag.M3TruncationWarning")]  # truncation is under test here

LONG = " ".join(f"Paragraph {i}: the shared encoder reads long documents, and retrieval must still find them." for i in range(60))
TEXTS = [
    "What is BGE M3?",
    "BM25 is a bag-of-words retrieval function that ranks documents by query terms.",
    "Le modèle encode des textes en plusieurs langues avec un seul passage.",
    "Der Encoder liefert dichte, spärliche und ColBERT-Vektoren.",
    "¿Dónde está la biblioteca de la universidad?",
    "检索增强生成把检索结果交给大语言模型。",
    "日本語の文章も同じモデルで埋め込みます。",
    "Поиск по смыслу работает на многих языках.",
    "البحث الهجين يجمع بين المتجهات الكثيفة والمتناثرة.",
    "def score(q, p): return q @ p.T  # 42 tokens, 3.14",
    "apple apple apple banana apple banana cherry apple",
    "",
    "   ",
    "ends with whitespace ",
    "a",
    LONG,
]


@pytest.fixture(scope="module")
def flag(tiny_checkpoint: Path) -> Any:
    BGEM3FlagModel = reference("FlagEmbedding", "BGEM3FlagModel")
    return BGEM3FlagModel(str(tiny_checkpoint), use_fp16=False, devices="cpu")


def _flag_encode(flag: Any, texts: Any, **kwargs: Any) -> dict[str, Any]:
    return flag.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True, **kwargs)


def _assert_lexical_equal(ours: dict[int, float], theirs: dict[str, float]) -> None:
    theirs_int = {int(k): float(v) for k, v in theirs.items()}
    # a weight within ATOL of zero may fall on either side of the `w > 0` cut
    for key in set(ours) | set(theirs_int):
        assert abs(ours.get(key, 0.0) - theirs_int.get(key, 0.0)) <= ATOL, key
    assert {k for k, v in ours.items() if v > ATOL} == {k for k, v in theirs_int.items() if v > ATOL}


def _assert_outputs_equal(ours: Any, theirs: dict[str, Any]) -> None:
    np.testing.assert_allclose(ours["dense_vecs"], theirs["dense_vecs"], atol=ATOL, rtol=0)
    assert len(ours["lexical_weights"]) == len(theirs["lexical_weights"])
    for a, b in zip(ours["lexical_weights"], theirs["lexical_weights"]):
        _assert_lexical_equal(a, b)
    assert len(ours["colbert_vecs"]) == len(theirs["colbert_vecs"])
    for a, b in zip(ours["colbert_vecs"], theirs["colbert_vecs"]):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def test_checkpoint_gives_non_degenerate_outputs(encoder: M3Encoder) -> None:
    out = encoder.encode(TEXTS, return_sparse=True)
    cos = out.dense @ out.dense.T
    off_diagonal = cos[~np.eye(len(TEXTS), dtype=bool)]
    assert off_diagonal.mean() < 0.9, "texts must get clearly different dense vectors"
    assert sum(bool(w) for w in out.lexical_weights) >= len(TEXTS) - 3


@pytest.mark.parametrize("max_length", [8192, 24])
def test_encode_matches_flagembedding(encoder: M3Encoder, flag: Any, max_length: int) -> None:
    theirs = _flag_encode(flag, TEXTS, batch_size=4, max_length=max_length)
    ours = encoder.encode(TEXTS, max_length=max_length, return_sparse=True, return_colbert_vecs=True)
    _assert_outputs_equal(ours, theirs)
    assert ours.truncated.any() == (max_length == 24)


def test_batching_does_not_change_outputs(encoder: M3Encoder, flag: Any) -> None:
    theirs = _flag_encode(flag, TEXTS, batch_size=256, max_length=8192)
    ours = encoder.encode(TEXTS, batch_size=3, batch_tokens=64, return_sparse=True, return_colbert_vecs=True)
    _assert_outputs_equal(ours, theirs)


def test_single_string_matches_flagembedding(encoder: M3Encoder, flag: Any) -> None:
    theirs = _flag_encode(flag, TEXTS[2], max_length=8192)
    ours = encoder.encode(TEXTS[2], return_sparse=True, return_colbert_vecs=True)
    assert ours["dense_vecs"].shape == theirs["dense_vecs"].shape
    np.testing.assert_allclose(ours["dense_vecs"], theirs["dense_vecs"], atol=ATOL, rtol=0)
    _assert_lexical_equal(ours["lexical_weights"], theirs["lexical_weights"])
    np.testing.assert_allclose(ours["colbert_vecs"], theirs["colbert_vecs"], atol=ATOL, rtol=0)


def test_queries_and_corpus_match_flagembedding(encoder: M3Encoder, flag: Any) -> None:
    theirs = flag.encode_queries(TEXTS, max_length=16, return_dense=True)
    ours = encoder.encode_queries(TEXTS, max_length=16)
    np.testing.assert_allclose(ours["dense_vecs"], theirs["dense_vecs"], atol=ATOL, rtol=0)
    theirs = flag.encode_corpus(TEXTS, max_length=512, return_dense=True)
    ours = encoder.encode_corpus(TEXTS, max_length=512)
    np.testing.assert_allclose(ours["dense_vecs"], theirs["dense_vecs"], atol=ATOL, rtol=0)


def test_pairwise_scores_match_flagembedding(encoder: M3Encoder, flag: Any) -> None:
    theirs = _flag_encode(flag, TEXTS, max_length=8192)
    ours = encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    lw_t, lw_o = theirs["lexical_weights"], ours.lexical_weights
    np.testing.assert_allclose(
        encoder.compute_lexical_matching_score(lw_o, lw_o),
        flag.compute_lexical_matching_score(lw_t, lw_t),
        atol=ATOL,
    )
    assert encoder.compute_lexical_matching_score(lw_o[0], lw_o[1]) == pytest.approx(
        flag.compute_lexical_matching_score(lw_t[0], lw_t[1]), abs=ATOL
    )
    for i, j in [(0, 1), (1, 1), (4, 15), (11, 2), (10, 10)]:
        score = encoder.colbert_score(ours.colbert_vecs[i], ours.colbert_vecs[j])
        assert isinstance(score, float)
        ref = float(flag.colbert_score(theirs["colbert_vecs"][i], theirs["colbert_vecs"][j]))
        assert score == pytest.approx(ref, abs=ATOL)


def test_convert_id_to_token_matches_flagembedding(encoder: M3Encoder, flag: Any) -> None:
    theirs = flag.convert_id_to_token(_flag_encode(flag, TEXTS[:4])["lexical_weights"])
    ours = encoder.convert_id_to_token(encoder.encode(TEXTS[:4], return_sparse=True).lexical_weights)
    for a, b in zip(ours, theirs):
        assert set(a) == set(b)
        for token in a:
            assert a[token] == pytest.approx(float(b[token]), abs=ATOL)


PAIRS = [(TEXTS[i], TEXTS[j]) for i, j in [(0, 1), (0, 15), (2, 3), (5, 6), (11, 12), (10, 10), (13, 14), (8, 9)]]


@pytest.mark.parametrize("weights", [None, [0.4, 0.2, 0.4], [1.0, 0.0, 0.5]])
def test_compute_score_matches_flagembedding(encoder: M3Encoder, flag: Any, weights: Any) -> None:
    # batch_size=1: FlagEmbedding's batched ColBERT score lets padding join the max (a known bug)
    theirs = flag.compute_score(PAIRS, batch_size=1, max_query_length=32, max_passage_length=8192, weights_for_different_modes=weights)
    ours = encoder.compute_score(PAIRS, max_query_length=32, max_passage_length=8192, weights_for_different_modes=weights)
    assert list(ours) == list(theirs)
    for mode in theirs:
        np.testing.assert_allclose(ours[mode], theirs[mode], atol=ATOL, err_msg=mode)


def test_compute_score_single_pair_and_empty(encoder: M3Encoder, flag: Any) -> None:
    theirs = flag.compute_score(PAIRS[1], batch_size=1, max_passage_length=8192)
    ours = encoder.compute_score(PAIRS[1], max_passage_length=8192)
    for mode, value in theirs.items():
        assert isinstance(ours[mode], float)
        assert ours[mode] == pytest.approx(value, abs=ATOL)
    assert encoder.compute_score([]) == [] == flag.compute_score([])


def test_colbert_score_ignores_padding_unlike_batched_reference(encoder: M3Encoder, flag: Any) -> None:
    """Where FlagEmbedding's batched score is clamped by padding, ours equals its exact score."""
    pairs = [(q, p) for q in TEXTS[:6] for p in (TEXTS[15], TEXTS[14])]
    exact = flag.compute_score(pairs, batch_size=1, max_passage_length=8192)["colbert"]
    batched = flag.compute_score(pairs, batch_size=len(pairs), max_passage_length=8192)["colbert"]
    ours = encoder.compute_score(pairs, max_passage_length=8192)["colbert"]
    np.testing.assert_allclose(ours, exact, atol=ATOL)
    assert all(b >= e - ATOL for b, e in zip(batched, exact))  # padding can only raise the max
