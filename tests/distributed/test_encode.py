"""encode_dataset on a local Ray: the same outputs as the in-process encoder, written with Ray's
Parquet writer and read back into an index without encoding again."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from m3rag import InputTypeError, InputValueError, M3Encoder, M3Index, M3Output, M3TruncationWarning, ModelMismatchError
from m3rag.testing import build_checkpoint
from tests.helpers import DOCS

ray = pytest.importorskip("ray")  # the ray extra is part of the test extra: this never skips there

from m3rag.distributed import add_to_index, encode_dataset, iter_encoded  # noqa: E402
from m3rag.distributed.encode import plan_encoding  # noqa: E402

pytestmark = pytest.mark.service

LONG = " ".join(DOCS[:12])  # several hundred tokens: cut at MAX_LENGTH
TEXTS = [*DOCS, "", LONG]
ROWS = [{"id": f"row-{i}", "text": t, "n": i} for i, t in enumerate(TEXTS)]
MAX_LENGTH = 96


@pytest.fixture(scope="module")
def reference(encoder: M3Encoder) -> M3Output:
    with pytest.warns(M3TruncationWarning):
        return encoder.encode(TEXTS, max_length=MAX_LENGTH, return_sparse=True, return_colbert_vecs=True)


@pytest.fixture(scope="module")
def encoded(ray_cluster: None, tiny_checkpoint: Path) -> Any:
    """Every row encoded by two CPU actors, 16 texts per call, kept in the object store."""
    ds = ray.data.from_items(ROWS, override_num_blocks=8)
    return encode_dataset(
        ds, model=tiny_checkpoint, num_gpus=0, concurrency=2, dtype="float32", max_length=MAX_LENGTH, block_rows=16
    ).materialize()


def _by_id(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    order = np.argsort([int(i.split("-")[1]) for i in table.column("id").to_pylist()], kind="stable")
    return table.take(pa.array(order))


def _assert_close(got: M3Output, want: M3Output) -> None:
    np.testing.assert_allclose(got.dense, want.dense, atol=1e-6, rtol=0)  # type: ignore[arg-type]
    assert got.sparse is not None and want.sparse is not None
    np.testing.assert_array_equal(got.sparse.indptr, want.sparse.indptr)
    np.testing.assert_array_equal(got.sparse.indices, want.sparse.indices)
    np.testing.assert_allclose(got.sparse.data, want.sparse.data, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(got.colbert_offsets, want.colbert_offsets)
    np.testing.assert_allclose(got.colbert, want.colbert, atol=1e-3, rtol=0)  # type: ignore[arg-type]  # float16 columns
    np.testing.assert_array_equal(got.num_tokens, want.num_tokens)
    np.testing.assert_array_equal(got.truncated, want.truncated)


def test_workers_import_this_checkout(ray_cluster: None) -> None:
    @ray.remote
    def where() -> str:
        import m3rag

        return m3rag.__file__  # type: ignore[return-value]

    assert ray.get(where.remote()).startswith(str(Path(__file__).resolve().parents[2] / "m3rag"))


def test_outputs_equal_the_in_process_encoder(encoded: Any, reference: M3Output, encoder: M3Encoder) -> None:
    table = _by_id(list(encoded.iter_batches(batch_format="pyarrow", batch_size=None)))
    assert table.num_rows == len(TEXTS) and table.column("text").to_pylist() == TEXTS
    assert table.column("n").to_pylist() == list(range(len(TEXTS)))  # input columns pass through
    got = next(iter_encoded([table], vocab_size=encoder.vocab_size, fingerprint=encoder.fingerprint))
    _assert_close(got.vectors, reference)
    assert got.vectors.truncated[-1] and got.vectors.num_tokens[-1] == MAX_LENGTH and got.vectors.num_tokens[-2] == 2
    assert got.metadatas[5] == {"n": 5}


def test_parquet_written_by_ray_goes_into_an_index_unchanged(encoded: Any, encoder: M3Encoder, tmp_path: Path) -> None:
    encoded.write_parquet(str(tmp_path / "out"))
    files = sorted((tmp_path / "out").glob("*.parquet"))
    assert files and sum(pq.read_metadata(f).num_rows for f in files) == len(TEXTS)
    want = M3Index(encoder, colbert_dtype="float32", max_length=MAX_LENGTH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M3TruncationWarning)
        want.add(TEXTS, ids=[r["id"] for r in ROWS], metadatas=[{"n": r["n"]} for r in ROWS])
    for index, data in ((M3Index(encoder, colbert_dtype="float32"), ray.data.read_parquet(str(tmp_path / "out"))),
                        (M3Index(encoder), [pq.read_table(f) for f in files])):  # fmt: skip
        assert add_to_index(index, data, batch_size=50) == len(TEXTS)
        assert sorted(index.ids) == sorted(want.ids)
        for got, ref in zip(index.get(want.ids), want.get(want.ids)):
            assert (got.id, got.text, got.metadata) == (ref.id, ref.text, ref.metadata)
        for query in (DOCS[3], "dense and sparse retrieval"):
            hits, ref_hits = index.search(query, k=5, rerank="colbert"), want.search(query, k=5, rerank="colbert")
            assert [h.id for h in hits] == [h.id for h in ref_hits]
            np.testing.assert_allclose([h.score for h in hits], [h.score for h in ref_hits], atol=2e-3)
    # the same rows again (a job written twice into one folder): upserts, nothing duplicated
    twice = [pq.read_table(f) for f in files] * 2
    again = M3Index(encoder)
    assert add_to_index(again, [pa.concat_tables(twice)], batch_size=10_000) == len(TEXTS) and len(again) == len(TEXTS)


def test_add_to_index_refuses_rows_of_another_model(encoded: Any, tmp_path: Path) -> None:
    other = M3Encoder(build_checkpoint(tmp_path / "other", preset="tiny", seed=1), device="cpu")  # same shapes, other weights
    with pytest.raises(ModelMismatchError, match="encoded by model"):
        add_to_index(M3Index(other), encoded)


def test_a_subset_of_outputs_and_float32_colbert(ray_cluster: None, tiny_checkpoint: Path, encoder: M3Encoder) -> None:
    ds = ray.data.from_items(ROWS[:30], override_num_blocks=3)
    table = pa.concat_tables(list(
        encode_dataset(ds, model=str(tiny_checkpoint), outputs=("colbert", "dense"), num_gpus=0, concurrency=1, colbert_dtype="float32")
        .iter_batches(batch_format="pyarrow", batch_size=None)
    ))  # fmt: skip
    assert "sparse_indices" not in table.column_names and table.schema.field("colbert").type.value_type.value_type == pa.float32()
    table = _by_id([table])
    got = next(iter_encoded([table], vocab_size=encoder.vocab_size, outputs=("dense", "colbert")))
    want = encoder.encode(TEXTS[:30], return_colbert_vecs=True)
    np.testing.assert_allclose(got.vectors.colbert, want.colbert, atol=1e-6, rtol=0)  # type: ignore[arg-type]
    np.testing.assert_allclose(got.vectors.dense, want.dense, atol=1e-6, rtol=0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(num_gpus=-1), InputValueError, "num_gpus must be >= 0"),
        (dict(num_gpus="1"), InputTypeError, "num_gpus must be a number"),
        (dict(num_cpus=0), InputValueError, "num_cpus must be > 0"),
        (dict(concurrency=0), InputValueError, "concurrency must be >= 1"),
        (dict(concurrency=(3, 2)), InputValueError, "min must not exceed max"),
        (dict(concurrency=(1, 2, 3)), InputValueError, "an int or a .min, max. pair"),
        (dict(outputs=()), InputValueError, "outputs is empty"),
        (dict(outputs=("dense", "lexical")), InputValueError, "unknown output 'lexical'"),
        (dict(outputs=("dense", "dense")), InputValueError, "repeats"),
        (dict(batch_tokens=1), InputValueError, "batch_tokens must be >= 2"),
        (dict(max_length=1.5), InputTypeError, "max_length must be an int"),
        (dict(block_rows=0), InputValueError, "block_rows must be >= 1"),
        (dict(dtype="float8"), InputValueError, "unknown dtype"),
        (dict(colbert_dtype="int8"), InputValueError, "colbert_dtype"),
        (dict(text_column=""), InputTypeError, "text_column must be a non-empty str"),
        (dict(model="http://127.0.0.1:8000"), InputValueError, "m3rag serve address"),
        (dict(model="no/such/dir"), FileNotFoundError, "does not exist"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    kwargs: dict[str, Any], error: type[Exception], message: str, tiny_checkpoint: Path
) -> None:
    kwargs = {"model": tiny_checkpoint, "num_gpus": 0, **kwargs}
    with pytest.raises(error, match=message):
        plan_encoding(**kwargs)


def test_bad_datasets_are_refused(ray_cluster: None, tiny_checkpoint: Path) -> None:
    with pytest.raises(InputTypeError, match=r"ds must be a ray.data.Dataset"):
        encode_dataset([{"text": "x"}], model=tiny_checkpoint, num_gpus=0)
    ds = ray.data.from_items([{"body": "x", "n": 1}]).materialize()
    with pytest.raises(InputValueError, match="text_column 'text' is not in the dataset"):
        encode_dataset(ds, model=tiny_checkpoint, num_gpus=0)
    clashing = ray.data.from_items([{"text": "x", "dense": 1.0}]).materialize()
    with pytest.raises(InputValueError, match=r"already has columns \['dense'\]"):
        encode_dataset(clashing, model=tiny_checkpoint, num_gpus=0)
    lazy = ray.data.from_items([{"text": "a"}, {"text": None}]).map(lambda row: row)  # schema unknown until it runs
    encoded = encode_dataset(lazy, model=tiny_checkpoint, num_gpus=0, concurrency=1)
    with pytest.raises(InputValueError, match="has a null at row 1"):  # an actor's error, as m3rag's own
        next(iter_encoded(encoded, vocab_size=10))
