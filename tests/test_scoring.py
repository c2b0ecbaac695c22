from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from m3rag import InputTypeError, InputValueError, scoring


def _unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _brute_colbert(q: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([max(float(qi @ pj) for pj in p) for qi in q]))


def test_colbert_scores_equal_brute_force_with_ragged_lengths() -> None:
    rng = np.random.default_rng(0)
    q = _unit(rng, 7, 16)
    passages = [_unit(rng, n, 16) for n in (1, 5, 30, 2, 17)]
    expected = [_brute_colbert(q, p) for p in passages]
    np.testing.assert_allclose(scoring.colbert_scores(q, passages), expected, atol=1e-6)
    assert scoring.colbert_score(q, passages[2]) == pytest.approx(expected[2], abs=1e-6)
    queries = [_unit(rng, n, 16) for n in (3, 9, 1, 4, 12)]
    np.testing.assert_allclose(
        scoring.colbert_pair_scores(queries, passages),
        [_brute_colbert(a, b) for a, b in zip(queries, passages)],
        atol=1e-6,
    )


def test_colbert_padding_never_joins_the_max() -> None:
    # every similarity is negative: a zero padding vector would clamp the max to 0
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    short = np.array([[-1.0, 0.0]], dtype=np.float32)
    long = np.array([[-0.6, 0.8], [-0.8, 0.6], [0.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(scoring.colbert_scores(q, [short, long]), [-1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(scoring.colbert_pair_scores([q, q], [short, long]), [-1.0, 0.0], atol=1e-6)


def test_colbert_empty_cases() -> None:
    q = np.ones((2, 4), dtype=np.float32)
    assert scoring.colbert_scores(q, []).shape == (0,)
    assert scoring.colbert_pair_scores([], []).shape == (0,)
    with pytest.raises(InputValueError):
        scoring.colbert_score(q, np.ones((3, 5), dtype=np.float32))


def test_lexical_scores_equal_dict_loop() -> None:
    rng = np.random.default_rng(1)
    dicts = [{int(k): float(rng.random()) for k in rng.choice(50, size=8, replace=False)} for _ in range(6)]
    rows = [i for i, d in enumerate(dicts) for _ in d]
    cols = [k for d in dicts for k in d]
    vals = [v for d in dicts for v in d.values()]
    matrix = sp.csr_array((vals, (rows, cols)), shape=(6, 50))
    brute = np.array([[sum(w * b.get(k, 0.0) for k, w in a.items()) for b in dicts] for a in dicts])
    np.testing.assert_allclose(scoring.lexical_scores(matrix, matrix), brute, atol=1e-12)
    np.testing.assert_allclose(scoring.lexical_matching_score(dicts, dicts), brute, atol=1e-12)
    np.testing.assert_allclose(
        scoring.lexical_pair_scores(matrix, matrix[[1, 0, 2, 3, 5, 4]]),
        [brute[0, 1], brute[1, 0], brute[2, 2], brute[3, 3], brute[4, 5], brute[5, 4]],
        atol=1e-12,
    )
    # FlagEmbedding's str keys mix with int keys
    str_keyed = {str(k): v for k, v in dicts[0].items()}
    assert scoring.lexical_matching_score(str_keyed, dicts[1]) == pytest.approx(brute[0, 1])
    with pytest.raises(InputTypeError):
        scoring.lexical_matching_score(dicts[0], dicts)  # type: ignore[arg-type]


@pytest.mark.parametrize("weights", [[1, 1], [1, -1, 1], [float("nan"), 1, 1], "abc", [True, 1, 1], {"bm25": 1.0}, [1, "x", 1]])
def test_mode_weights_are_checked(weights: object) -> None:
    with pytest.raises((InputValueError, InputTypeError)):
        scoring.resolve_weights(weights)  # type: ignore[arg-type]


def test_weights_default_and_merge() -> None:
    assert scoring.resolve_weights(None) == dict(scoring.DEFAULT_WEIGHTS) == {"dense": 1.0, "sparse": 0.3, "colbert": 1.0}
    assert scoring.resolve_weights(None, default=scoring.EQUAL_WEIGHTS) == {"dense": 1.0, "sparse": 1.0, "colbert": 1.0}
    assert scoring.resolve_weights([0.4, 0.2, 0.4]) == {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}
    assert scoring.resolve_weights({"sparse": 1.0}) == {"dense": 1.0, "sparse": 1.0, "colbert": 1.0}


def test_fusing_modes_whose_weights_sum_to_zero_is_an_error() -> None:
    weights = scoring.resolve_weights([0, 0, 1])  # fine for ColBERT alone
    with pytest.raises(InputValueError, match="sum to 0"):
        scoring.weighted_fusion({"dense": np.ones(2), "sparse": np.ones(2)}, weights)
