"""The Arrow layout of encoded rows, and back to M3Output (pyarrow only: no Ray running)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder, M3Output, M3TruncationWarning, ModelMismatchError
from m3rag.distributed.columns import output_columns, to_output
from tests.helpers import DOCS

TEXTS = [*DOCS[:20], "", "x " * 300]


@pytest.fixture(scope="module")
def out(encoder: M3Encoder) -> M3Output:
    with pytest.warns(M3TruncationWarning):  # the last text is cut
        return encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True, max_length=128)


def _table(out: M3Output, fingerprint: str, **kwargs: object) -> pa.Table:
    return pa.table({"text": TEXTS, **output_columns(out, fingerprint, **kwargs)})  # type: ignore[arg-type]


def _assert_same(got: M3Output, want: M3Output, colbert_atol: float = 0.0) -> None:
    assert got.dense is not None and want.dense is not None and got.sparse is not None and want.sparse is not None
    np.testing.assert_array_equal(got.dense, want.dense)
    assert got.sparse.shape == want.sparse.shape and (got.sparse != want.sparse).nnz == 0
    np.testing.assert_array_equal(got.colbert_offsets, want.colbert_offsets)
    np.testing.assert_allclose(got.colbert, want.colbert, atol=colbert_atol, rtol=0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.num_tokens, want.num_tokens)
    np.testing.assert_array_equal(got.truncated, want.truncated)


def test_layout_is_plain_arrow(out: M3Output, encoder: M3Encoder) -> None:
    table = _table(out, encoder.fingerprint)
    schema = table.schema
    assert schema.field("dense").type == pa.list_(pa.float32(), encoder.dim)
    assert schema.field("sparse_indices").type == pa.list_(pa.int32()) and schema.field("sparse_values").type == pa.list_(pa.float32())
    assert schema.field("colbert").type == pa.list_(pa.list_(pa.float16(), encoder.colbert_dim))
    assert schema.field("num_tokens").type == pa.int32() and schema.field("truncated").type == pa.bool_()
    rows = table.to_pylist()
    assert [len(r["colbert"]) for r in rows] == [r["num_tokens"] - 1 for r in rows]
    assert rows[-1]["truncated"] and not rows[0]["truncated"] and set(table.column("m3rag_model").to_pylist()) == {encoder.fingerprint}
    assert rows[3]["sparse_indices"] == sorted(out.lexical_weights[3])  # type: ignore[index]


def test_round_trip_through_parquet(out: M3Output, encoder: M3Encoder, tmp_path: pytest.TempPathFactory) -> None:
    pq.write_table(_table(out, encoder.fingerprint), tmp_path / "part.parquet")  # type: ignore[operator]
    back = pq.read_table(tmp_path / "part.parquet")  # type: ignore[operator]
    got = to_output(back, encoder.vocab_size, fingerprint=encoder.fingerprint)
    assert got.colbert is not None and got.colbert.dtype == np.float32
    _assert_same(got, out, colbert_atol=1e-3)  # float16 storage
    np.testing.assert_array_equal(got.colbert, out.colbert.astype(np.float16).astype(np.float32))  # type: ignore[union-attr]
    exact = to_output(_table(out, encoder.fingerprint, colbert_dtype="float32"), encoder.vocab_size)
    _assert_same(exact, out)


def test_slices_and_chunked_columns(out: M3Output, encoder: M3Encoder) -> None:
    table = _table(out, encoder.fingerprint)
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7)])
    _assert_same(to_output(chunked, encoder.vocab_size), out, colbert_atol=1e-3)
    part = to_output(table.slice(5, 4), encoder.vocab_size)
    _assert_same(part, out.slice(5, 9), colbert_atol=1e-3)


def test_only_the_outputs_asked_for(out: M3Output, encoder: M3Encoder) -> None:
    dense_only = M3Output(out.dense, None, None, None, out.num_tokens, out.truncated)
    table = _table(dense_only, encoder.fingerprint)
    assert "sparse_indices" not in table.column_names and "colbert" not in table.column_names
    got = to_output(table, encoder.vocab_size, outputs=("dense",))
    assert got.sparse is None and got.colbert is None
    with pytest.raises(InputValueError, match="no 'sparse_indices' column"):
        to_output(table, encoder.vocab_size)


def test_refusals(out: M3Output, encoder: M3Encoder) -> None:
    table = _table(out, encoder.fingerprint)
    with pytest.raises(ModelMismatchError, match="encoded by model"):
        to_output(table, encoder.vocab_size, fingerprint="0" * 16)
    with pytest.raises(InputValueError, match="token ids outside"):
        to_output(table, 10)
    with pytest.raises(InputTypeError, match=r"pyarrow\.Table"):
        to_output(table.to_pylist(), encoder.vocab_size)  # type: ignore[arg-type]
    ragged = table.set_column(table.column_names.index("dense"), "dense", pa.array([[0.5] * (1 + i % 2) for i in range(len(TEXTS))]))
    with pytest.raises(InputValueError, match="vectors of different lengths"):
        to_output(ragged, encoder.vocab_size)
    nulls = table.set_column(table.column_names.index("num_tokens"), "num_tokens", pa.array([None] * len(TEXTS), pa.int32()))
    with pytest.raises(InputValueError, match="null values"):
        to_output(nulls, encoder.vocab_size)
