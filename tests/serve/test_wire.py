"""The wire format alone (fast tier): round trips, compactness, malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from m3rag import InputValueError, M3Output
from m3rag.serve.wire import concat_outputs, decode_array, decode_output, empty_output, encode_array, encode_output

DIM, VOCAB, CDIM = 8, 50, 4


def _output(n: int, seed: int = 0) -> M3Output:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 9, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths - 1, out=offsets[1:])
    dense = rng.standard_normal((n, DIM)).astype(np.float32)
    sparse = sp.random_array((n, VOCAB), density=0.2, format="csr", dtype=np.float32, rng=rng)
    sparse.sort_indices()
    colbert = rng.standard_normal((int(offsets[-1]), CDIM)).astype(np.float32)
    return M3Output(dense, sparse, colbert, offsets, lengths.astype(np.int64), rng.random(n) < 0.3)


def _roundtrip(out: M3Output, dtype: str = "float32") -> M3Output:
    data = json.loads(json.dumps(encode_output(out, dtype)))  # type: ignore[arg-type]
    return decode_output(data, dim=DIM, vocab_size=VOCAB, colbert_dim=CDIM)


def test_float32_round_trip_is_exact() -> None:
    out = _output(5)
    back = _roundtrip(out)
    np.testing.assert_array_equal(back.dense, out.dense)  # type: ignore[arg-type]
    assert back.sparse is not None and out.sparse is not None
    assert (back.sparse != out.sparse).nnz == 0 and back.sparse.dtype == np.float32
    np.testing.assert_array_equal(back.colbert, out.colbert)  # type: ignore[arg-type]
    np.testing.assert_array_equal(back.colbert_offsets, out.colbert_offsets)  # type: ignore[arg-type]
    np.testing.assert_array_equal(back.num_tokens, out.num_tokens)
    np.testing.assert_array_equal(back.truncated, out.truncated)
    assert back.lexical_weights == out.lexical_weights


def test_float16_colbert_is_half_the_bytes_and_close() -> None:
    out = _output(4)
    assert out.colbert is not None
    f32 = encode_array(out.colbert, "float32")
    f16 = encode_array(out.colbert, "float16")
    assert len(f16["data"]) < 0.6 * len(f32["data"])
    back = _roundtrip(out, "float16")
    np.testing.assert_allclose(back.colbert, out.colbert, rtol=1e-3, atol=1e-3)  # type: ignore[arg-type]


def test_colbert_is_compact_not_json_floats() -> None:
    rng = np.random.default_rng(0)
    block = rng.standard_normal((64 * 511, 64)).astype(np.float32)
    wire = json.dumps(encode_array(block, "float16"))
    assert len(wire) < block.size * 2 * 1.34 + 200  # base64 of 2 bytes a float, no per-float text
    assert len(wire) < len(json.dumps(block[:2000].tolist())) * len(block) / 2000 / 5


def test_unset_fields_stay_none() -> None:
    out = _output(3)
    partial = M3Output(out.dense, None, None, None, out.num_tokens, out.truncated)
    back = _roundtrip(partial)
    assert back.sparse is None and back.colbert is None and back.colbert_offsets is None
    np.testing.assert_array_equal(back.dense, out.dense)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d["colbert"].update(data="not base64!"),
        lambda d: d["colbert"].update(shape=[3, 3]),
        lambda d: d["colbert"].update(offsets=[0, 1]),
        lambda d: d["colbert"].update(dtype="float64"),
        lambda d: d.update(dense=[[0.0] * (DIM - 1)]),
        lambda d: d["sparse"][0].update(indices=[VOCAB + 5], values=[1.0]),
        lambda d: d["sparse"][0].update(values=[]),
        lambda d: d.update(truncated=[True]),
        lambda d: d.pop("num_tokens"),
    ],
)
def test_malformed_data_raises_input_value_error(corrupt: object) -> None:
    data = json.loads(json.dumps(encode_output(_output(2))))
    data["sparse"][0] = {"indices": [1, 2], "values": [0.5, 0.25]}
    corrupt(data)  # type: ignore[operator]
    with pytest.raises(InputValueError):
        decode_output(data, dim=DIM, vocab_size=VOCAB, colbert_dim=CDIM)


def test_decode_array_checks_byte_count() -> None:
    obj = encode_array(np.ones((2, 3), dtype=np.float32))
    obj["shape"] = [2, 4]
    with pytest.raises(InputValueError, match="bytes"):
        decode_array(obj)
    with pytest.raises(InputValueError, match="dtype"):
        encode_array(np.ones((1, 1)), "int8")  # type: ignore[arg-type]


def test_concat_equals_the_whole() -> None:
    out = _output(7)
    joined = concat_outputs([out.slice(0, 3), out.slice(3, 4), out.slice(4, 7)])
    np.testing.assert_array_equal(joined.dense, out.dense)  # type: ignore[arg-type]
    assert (joined.sparse != out.sparse).nnz == 0  # type: ignore[operator]
    np.testing.assert_array_equal(joined.colbert, out.colbert)  # type: ignore[arg-type]
    np.testing.assert_array_equal(joined.colbert_offsets, out.colbert_offsets)  # type: ignore[arg-type]
    np.testing.assert_array_equal(joined.truncated, out.truncated)


def test_empty_output_has_the_local_shapes() -> None:
    out = empty_output(dim=DIM, vocab_size=VOCAB, colbert_dim=CDIM, dense=True, sparse=True, colbert=True)
    assert len(out) == 0 and out.dense.shape == (0, DIM) and out.sparse.shape == (0, VOCAB)  # type: ignore[union-attr]
    assert out.colbert.shape == (0, CDIM) and out.colbert_offsets.tolist() == [0]  # type: ignore[union-attr]
    assert empty_output(dim=DIM, vocab_size=VOCAB, colbert_dim=CDIM, dense=True, sparse=False, colbert=False).sparse is None
