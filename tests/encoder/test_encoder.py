from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from m3rag import DenseOnlyError, InputTypeError, InputValueError, M3Encoder, M3Item, M3Output, M3TruncationWarning
from m3rag.testing import SAMPLE_TEXTS

TEXTS = list(SAMPLE_TEXTS[:24])


def test_output_types_and_shapes(encoder: M3Encoder) -> None:
    out = encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    assert isinstance(out, M3Output) and len(out) == len(TEXTS)
    assert out.dense.dtype == np.float32 and out.dense.shape == (len(TEXTS), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(out.dense, axis=1), 1.0, atol=1e-6)
    assert isinstance(out.sparse, sp.csr_array) and out.sparse.shape == (len(TEXTS), encoder.vocab_size)
    assert out.sparse.dtype == np.float32 and out.sparse.has_sorted_indices
    assert out.colbert.dtype == np.float32 and out.colbert.shape[1] == encoder.colbert_dim
    assert out.colbert_offsets[-1] == len(out.colbert)
    np.testing.assert_array_equal(np.diff(out.colbert_offsets), out.num_tokens - 1)
    np.testing.assert_allclose(np.linalg.norm(out.colbert, axis=1), 1.0, atol=1e-5)
    assert not out.truncated.any()


def test_lexical_weights_are_int_keyed_positive_and_equal_the_csr(encoder: M3Encoder) -> None:
    out = encoder.encode(TEXTS, return_dense=False, return_sparse=True)
    assert out.dense is None and out.colbert is None
    specials = {0, 1, 2, 3}
    for i, weights in enumerate(out.lexical_weights):
        assert all(isinstance(k, int) and isinstance(v, float) and v > 0 for k, v in weights.items())
        assert not specials & set(weights)
        row = out.sparse[[i]]
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == weights


def test_repeated_token_keeps_its_max_weight(encoder: M3Encoder) -> None:
    text = "apple apple apple banana apple"
    ids = encoder.tokenizer(text)["input_ids"]
    hidden = encoder.model(input_ids=torch.tensor([ids])).last_hidden_state
    per_position = torch.relu(encoder.sparse_linear(hidden))[0, :, 0].tolist()
    expected: dict[int, float] = {}
    for token, w in zip(ids, per_position):
        if token > 3 and w > 0:
            expected[token] = max(expected.get(token, 0.0), w)
    got = encoder.encode(text, return_dense=False, return_sparse=True).lexical_weights
    assert got.keys() == expected.keys()
    for token in got:
        assert got[token] == pytest.approx(expected[token], abs=1e-5)


def test_item_views_match_batch(encoder: M3Encoder) -> None:
    out = encoder.encode(TEXTS[:5], return_sparse=True, return_colbert_vecs=True)
    item = out.item(-1)
    assert isinstance(item, M3Item)
    np.testing.assert_array_equal(item.dense_vecs, out.dense[4])
    assert item.lexical_weights == out.lexical_weights[4]
    assert np.shares_memory(item.colbert_vecs, out.colbert)
    assert [i.num_tokens for i in out] == out.num_tokens.tolist()
    with pytest.raises(IndexError):
        out.item(5)
    with pytest.raises(KeyError, match="dense_vecs"):
        out["dense"]


def test_single_string_returns_one_item(encoder: M3Encoder) -> None:
    item = encoder.encode(TEXTS[0], return_colbert_vecs=True)
    assert isinstance(item, M3Item) and item.dense_vecs.shape == (encoder.dim,)
    assert item["lexical_weights"] is None and item.colbert_vecs.ndim == 2


def test_heads_not_asked_for_do_not_run(encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("sparse_linear", "colbert_linear"):
        head = getattr(encoder, name)
        monkeypatch.setattr(head, "forward", lambda x, _f=head.forward, _n=name: calls.append(_n) or _f(x))
    encoder.encode(TEXTS)
    assert calls == []
    encoder.encode(TEXTS[:2], return_dense=False, return_colbert_vecs=True)
    assert calls == ["colbert_linear"]


def test_outputs_do_not_depend_on_batching(encoder: M3Encoder) -> None:
    kwargs = dict(return_sparse=True, return_colbert_vecs=True)
    a = encoder.encode(TEXTS, **kwargs)
    b = encoder.encode(TEXTS, batch_size=1, **kwargs)
    c = encoder.encode(TEXTS, batch_tokens=40, **kwargs)
    for other in (b, c):
        np.testing.assert_allclose(a.dense, other.dense, atol=1e-5)
        np.testing.assert_allclose(a.colbert, other.colbert, atol=1e-5)
        np.testing.assert_array_equal(a.colbert_offsets, other.colbert_offsets)
        assert abs(a.sparse - other.sparse).max() <= 1e-5


def test_truncation_is_reported(encoder: M3Encoder) -> None:
    texts = ["short", " ".join(["word"] * 100)]
    with pytest.warns(M3TruncationWarning, match="1 of 2 texts"):
        out = encoder.encode(texts, max_length=16, return_colbert_vecs=True)
    assert out.truncated.tolist() == [False, True]
    assert out.num_tokens[1] == 16
    assert len(out.colbert_vecs[1]) == 15


def test_longest_input_the_model_takes(encoder: M3Encoder) -> None:
    text = " ".join(SAMPLE_TEXTS) * 40
    with pytest.warns(M3TruncationWarning):
        out = encoder.encode([text], return_sparse=True)
    assert out.num_tokens[0] == encoder.max_length == 8192
    with pytest.raises(InputValueError, match="8192"):
        encoder.encode([text], max_length=8193)


def test_empty_input_gives_empty_output(encoder: M3Encoder) -> None:
    out = encoder.encode([], return_sparse=True, return_colbert_vecs=True)
    assert len(out) == 0 and out.dense.shape == (0, encoder.dim)
    assert out.sparse.shape == (0, encoder.vocab_size) and out.lexical_weights == []
    assert out.colbert_vecs == [] and out.colbert_offsets.tolist() == [0]


def test_empty_and_whitespace_texts_encode(encoder: M3Encoder) -> None:
    out = encoder.encode(["", "   ", "\n"], return_sparse=True, return_colbert_vecs=True)
    assert np.isfinite(out.dense).all()
    assert all(len(v) >= 1 for v in out.colbert_vecs)  # </s> is always there


@pytest.mark.parametrize(
    ("texts", "message"),
    [(None, "NoneType"), (["ok", 3], r"texts\[1\] is int"), (["ok", None], r"texts\[1\] is NoneType"), (b"bytes", "bytes")],
)
def test_bad_texts_raise_typed_errors(encoder: M3Encoder, texts: object, message: str) -> None:
    with pytest.raises(InputTypeError, match=message):
        encoder.encode(texts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(batch_size=0), InputValueError),
        (dict(max_length=1), InputValueError),
        (dict(batch_tokens=1), InputValueError),
        (dict(batch_size=2.5), InputTypeError),
        (dict(return_dense=False), InputValueError),
    ],
)
def test_bad_arguments_raise_typed_errors(encoder: M3Encoder, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        encoder.encode(["text"], **kwargs)


def test_out_of_memory_shrinks_the_batch_and_keeps_results(encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    real_forward = encoder._forward
    seen: list[int] = []

    def forward(batch_ids: list[list[int]]):  # type: ignore[no-untyped-def]
        seen.append(len(batch_ids))
        if len(batch_ids) > 3:
            raise torch.cuda.OutOfMemoryError("simulated CUDA out of memory")
        return real_forward(batch_ids)

    monkeypatch.setattr(encoder, "_forward", forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    got = encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    assert max(seen) > 3 and seen[-1] <= 3
    np.testing.assert_allclose(got.dense, expected.dense, atol=1e-5)
    np.testing.assert_allclose(got.colbert, expected.colbert, atol=1e-5)
    assert abs(got.sparse - expected.sparse).max() <= 1e-5


def test_out_of_memory_on_a_single_text_is_raised(encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    def forward(batch_ids: list[list[int]]):  # type: ignore[no-untyped-def]
        raise torch.cuda.OutOfMemoryError("simulated CUDA out of memory")

    monkeypatch.setattr(encoder, "_forward", forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        encoder.encode(["one"])


def test_other_runtime_errors_are_not_retried(encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def forward(batch_ids: list[list[int]]):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(encoder, "_forward", forward)
    with pytest.raises(RuntimeError, match="boom"):
        encoder.encode(TEXTS)
    assert calls == [1]


def test_threads_get_the_serial_results(encoder: M3Encoder) -> None:
    jobs = [TEXTS[i : i + 1 + i % 5] for i in range(16)]
    serial = [encoder.encode(j, return_sparse=True, return_colbert_vecs=True) for j in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda j: encoder.encode(j, return_sparse=True, return_colbert_vecs=True), jobs))
    for s, t in zip(serial, threaded):
        np.testing.assert_allclose(s.dense, t.dense, atol=1e-5)
        np.testing.assert_allclose(s.colbert, t.colbert, atol=1e-5)
        assert s.lexical_weights.__len__() == t.lexical_weights.__len__()


def test_bfloat16_on_cpu_stays_close_to_float32(tiny_checkpoint: Path, encoder: M3Encoder) -> None:
    bf16 = M3Encoder(tiny_checkpoint, device="cpu", dtype="bf16")
    assert bf16.dtype == torch.bfloat16 and next(bf16.model.parameters()).dtype == torch.bfloat16
    a = encoder.encode(TEXTS).dense
    b = bf16.encode(TEXTS).dense
    assert b.dtype == np.float32
    assert (a * b).sum(axis=1).min() > 0.98


def test_dense_only_mode(tiny_checkpoint: Path) -> None:
    enc = M3Encoder(tiny_checkpoint, device="cpu", dense_only=True)
    assert enc.dense_only and enc.colbert_dim is None
    assert enc.encode(["x"]).dense.shape == (1, enc.dim)
    with pytest.raises(DenseOnlyError, match="dense_only"):
        enc.encode(["x"], return_sparse=True)


def test_identity_is_stable_and_names_the_model(encoder: M3Encoder, tiny_checkpoint: Path) -> None:
    identity = encoder.identity
    assert identity["dim"] == encoder.dim and identity["vocab_size"] == encoder.vocab_size
    assert identity["fingerprint"] == M3Encoder(tiny_checkpoint, device="cpu").fingerprint
