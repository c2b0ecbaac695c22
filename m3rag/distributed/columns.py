"""M3 outputs as Arrow columns, and back: the dataset layout of :func:`~m3rag.distributed.encode_dataset`.

Plain Arrow types, so the Parquet files Ray writes are readable by any Arrow or Parquet tool:

=================  ==============================================  =========================================
column             Arrow type                                      holds
=================  ==============================================  =========================================
``dense``          ``fixed_size_list<float32>[d]``                 L2-normalised dense vector
``sparse_indices`` ``list<int32>``                                 token ids of the lexical weights, sorted
``sparse_values``  ``list<float32>``                               their weights (> 0), same lengths
``colbert``        ``list<fixed_size_list<float16|float32>[c]>``   one ColBERT vector per token after ``<s>``
``num_tokens``     ``int32``                                       tokens encoded, specials included
``truncated``      ``bool``                                        cut at ``max_length``
``m3rag_model``    ``string``                                      the model's fingerprint (16 hex digits)
=================  ==============================================  =========================================

A text's ColBERT list has ``num_tokens - 1`` vectors. Only pyarrow and numpy are needed here (no Ray).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from m3rag.encoder.output import M3Output
from m3rag.errors import InputTypeError, InputValueError, ModelMismatchError

__all__ = [
    "COLBERT",
    "DENSE",
    "MODEL",
    "NUM_TOKENS",
    "OUTPUTS",
    "OUTPUT_COLUMNS",
    "SPARSE_INDICES",
    "SPARSE_VALUES",
    "TRUNCATED",
    "ColbertDType",
    "output_columns",
    "to_output",
]

DENSE = "dense"
SPARSE_INDICES = "sparse_indices"
SPARSE_VALUES = "sparse_values"
COLBERT = "colbert"
NUM_TOKENS = "num_tokens"
TRUNCATED = "truncated"
MODEL = "m3rag_model"
OUTPUTS = ("dense", "sparse", "colbert")
"""The representations that can be asked for."""
OUTPUT_COLUMNS = (DENSE, SPARSE_INDICES, SPARSE_VALUES, COLBERT, NUM_TOKENS, TRUNCATED, MODEL)
"""Every column encoding may add (an input column of one of these names is refused)."""

ColbertDType = Literal["float16", "float32"]


def output_columns(out: M3Output, fingerprint: str, colbert_dtype: ColbertDType = "float16") -> dict[str, pa.Array]:
    """The columns of ``out`` (``n`` texts), for the representations it holds, in the layout above."""
    n = len(out)
    columns: dict[str, pa.Array] = {}
    if out.dense is not None:
        dense = np.ascontiguousarray(out.dense, dtype=np.float32)
        columns[DENSE] = pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1)), dense.shape[1])
    if out.sparse is not None:
        csr = out.sparse
        offsets = pa.array(csr.indptr.astype(np.int32))
        columns[SPARSE_INDICES] = pa.ListArray.from_arrays(offsets, pa.array(csr.indices.astype(np.int32)))
        columns[SPARSE_VALUES] = pa.ListArray.from_arrays(offsets, pa.array(csr.data.astype(np.float32)))
    if out.colbert is not None and out.colbert_offsets is not None:
        flat = np.ascontiguousarray(out.colbert, dtype=np.dtype(colbert_dtype))
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])
        columns[COLBERT] = pa.ListArray.from_arrays(pa.array(out.colbert_offsets.astype(np.int32)), vectors)
    columns[NUM_TOKENS] = pa.array(out.num_tokens.astype(np.int32))
    columns[TRUNCATED] = pa.array(out.truncated.astype(bool))
    columns[MODEL] = pa.array([fingerprint] * n, type=pa.string())
    return columns


def _column(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        raise InputValueError(
            f"the batch has no {name!r} column (columns: {', '.join(table.column_names)}); was it encoded with that output?"
        )
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise InputValueError(f"column {name!r} has {column.null_count} null values")
    return column


def _list_parts(column: pa.Array, name: str) -> tuple[np.ndarray, pa.Array]:
    """``(offsets int64 [n + 1] from 0, child values)`` of a list column."""
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise InputValueError(f"column {name!r} must be a list column, got {column.type}")
    offsets = column.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0], column.values.slice(offsets[0], offsets[-1] - offsets[0])


def _matrix(values: pa.Array, rows: int, name: str) -> np.ndarray:
    """A (fixed-size) list array of ``rows`` equal-length float vectors as ``float32 [rows, width]``."""
    if pa.types.is_fixed_size_list(values.type):
        width = values.type.list_size
        flat = values.flatten()
    else:
        offsets, flat = _list_parts(values, name)
        widths = np.diff(offsets)
        if rows and (widths != widths[0]).any():
            raise InputValueError(f"column {name!r} holds vectors of different lengths ({widths.min()} to {widths.max()})")
        width = int(widths[0]) if rows else 0
    if not pa.types.is_floating(flat.type):
        raise InputValueError(f"column {name!r} must hold float vectors, got {flat.type}")
    array: np.ndarray = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return array.reshape(rows, width)


def to_output(batch: pa.Table, vocab_size: int, *, fingerprint: str | None = None, outputs: Sequence[str] = OUTPUTS) -> M3Output:
    """An encoded batch (a ``pyarrow.Table`` in the layout above) as an :class:`~m3rag.M3Output`.

    ``outputs`` names the representations to read (the others are left ``None``); ``vocab_size``
    is the model's (the sparse matrix is ``[n, vocab_size]``). With ``fingerprint``, rows encoded
    by another model raise :class:`~m3rag.ModelMismatchError`. ColBERT vectors come back as
    float32 (exactly the float16 values when stored as float16).
    """
    if not isinstance(batch, pa.Table):
        raise InputTypeError(f"batch must be a pyarrow.Table (iter_batches(batch_format='pyarrow')), got {type(batch).__name__}")
    n = batch.num_rows
    if fingerprint is not None:
        found = set(_column(batch, MODEL).unique().to_pylist())
        if found - {fingerprint}:
            raise ModelMismatchError(
                f"rows were encoded by model {sorted(found - {fingerprint})} (fingerprint), not by this index's {fingerprint}"
            )
    num_tokens = _column(batch, NUM_TOKENS).to_numpy(zero_copy_only=False).astype(np.int64)
    truncated = _column(batch, TRUNCATED).to_numpy(zero_copy_only=False).astype(bool)
    dense = sparse = colbert = colbert_offsets = None
    if "dense" in outputs:
        dense = _matrix(_column(batch, DENSE), n, DENSE)
    if "sparse" in outputs:
        offsets, indices = _list_parts(_column(batch, SPARSE_INDICES), SPARSE_INDICES)
        value_offsets, values = _list_parts(_column(batch, SPARSE_VALUES), SPARSE_VALUES)
        if not np.array_equal(offsets, value_offsets):
            raise InputValueError(f"columns {SPARSE_INDICES!r} and {SPARSE_VALUES!r} have different lengths per row")
        cols = indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if cols.size and (cols.min() < 0 or cols.max() >= vocab_size):
            raise InputValueError(f"column {SPARSE_INDICES!r} holds token ids outside [0, {vocab_size})")
        data = values.to_numpy(zero_copy_only=False).astype(np.float32)
        sparse = sp.csr_array((data, cols, offsets), shape=(n, vocab_size))
        sparse.sort_indices()
    if "colbert" in outputs:
        colbert_offsets, vectors = _list_parts(_column(batch, COLBERT), COLBERT)
        colbert = _matrix(vectors, int(colbert_offsets[-1]), COLBERT)
    return M3Output(dense, sparse, colbert, colbert_offsets, num_tokens, truncated)
