"""The wire format ``m3rag serve`` and :class:`~m3rag.serve.client.RemoteM3Encoder` share.

Plain JSON, nothing pickled. Dense vectors are JSON lists of floats (a float32 value survives the
trip exactly: JSON carries it as the shortest double that reads back to it). Lexical weights are
``{"indices": [...], "values": [...]}`` per text, ids ascending. ColBERT vectors, which are
thousands of floats per text, travel compactly: all texts' rows as one little-endian float32 (or
float16) array in base64, with its shape and per-text row offsets::

    {"dtype": "float32", "shape": [T, C], "data": "<base64>", "offsets": [0, L_0, L_0 + L_1, ...]}

Pure numpy/scipy: imported by the client, which never imports the server's web stack.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from m3rag.encoder.output import M3Output
from m3rag.errors import InputValueError

__all__ = [
    "ARRAY_DTYPES",
    "ArrayDType",
    "concat_outputs",
    "decode_array",
    "decode_output",
    "empty_output",
    "encode_array",
    "encode_output",
]

ArrayDType = Literal["float32", "float16"]
ARRAY_DTYPES: tuple[ArrayDType, ...] = ("float32", "float16")
_LITTLE_ENDIAN: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def encode_array(array: np.ndarray, dtype: ArrayDType = "float32") -> dict[str, Any]:
    """A 2-D float array as ``{"dtype", "shape", "data"}`` (base64 of the little-endian bytes)."""
    if dtype not in _LITTLE_ENDIAN:
        raise InputValueError(f"dtype must be one of {', '.join(ARRAY_DTYPES)}, got {dtype!r}")
    data = np.ascontiguousarray(array, dtype=_LITTLE_ENDIAN[dtype])
    return {"dtype": dtype, "shape": list(data.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(obj: Mapping[str, Any]) -> np.ndarray:
    """The float32 array of :func:`encode_array`'s output; a malformed object raises InputValueError."""
    try:
        dtype = _LITTLE_ENDIAN[obj["dtype"]]
        shape = tuple(int(s) for s in obj["shape"])
        raw = base64.b64decode(obj["data"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputValueError(f"malformed array on the wire: {exc!r}") from None
    count = int(np.prod(shape)) if shape else 1
    if any(s < 0 for s in shape) or len(raw) != count * dtype.itemsize:
        raise InputValueError(f"array on the wire has {len(raw)} bytes, not {count} x {dtype.itemsize} for shape {list(shape)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)


def encode_output(out: M3Output, colbert_dtype: ArrayDType = "float32") -> dict[str, Any]:
    """An :class:`M3Output` as JSON-ready data; a field not computed is ``null``."""
    data: dict[str, Any] = {
        "dense": None if out.dense is None else out.dense.tolist(),
        "sparse": None,
        "colbert": None,
        "num_tokens": out.num_tokens.tolist(),
        "truncated": out.truncated.tolist(),
    }
    if out.sparse is not None:
        indptr, indices, values = out.sparse.indptr.tolist(), out.sparse.indices.tolist(), out.sparse.data.tolist()
        data["sparse"] = [{"indices": indices[a:b], "values": values[a:b]} for a, b in itertools.pairwise(indptr)]
    if out.colbert is not None and out.colbert_offsets is not None:
        data["colbert"] = {**encode_array(out.colbert, colbert_dtype), "offsets": out.colbert_offsets.tolist()}
    return data


def decode_output(data: Mapping[str, Any], *, dim: int, vocab_size: int, colbert_dim: int | None) -> M3Output:
    """:func:`encode_output`'s data back to an :class:`M3Output` with the local encoder's dtypes and
    shapes; anything inconsistent raises InputValueError (a server of another model, a bad proxy)."""
    try:
        num_tokens = np.asarray(data["num_tokens"], dtype=np.int64).reshape(-1)
        truncated = np.asarray(data["truncated"], dtype=bool).reshape(-1)
        n = len(num_tokens)
        dense = None
        if data.get("dense") is not None:
            dense = np.asarray(data["dense"], dtype=np.float32).reshape(n, dim)
        sparse = _decode_sparse(data["sparse"], n, vocab_size) if data.get("sparse") is not None else None
        colbert = offsets = None
        if data.get("colbert") is not None:
            colbert = decode_array(data["colbert"])
            offsets = np.asarray(data["colbert"]["offsets"], dtype=np.int64)
            if (
                colbert.ndim != 2
                or colbert.shape[1] != colbert_dim
                or offsets.shape != (n + 1,)
                or offsets[0] != 0
                or offsets[-1] != len(colbert)
            ):
                raise InputValueError(f"ColBERT block of shape {list(colbert.shape)} with {len(offsets)} offsets does not fit {n} texts")
            if np.any(np.diff(offsets) < 0):
                raise InputValueError("ColBERT offsets are not ascending")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputValueError):
            raise
        raise InputValueError(f"malformed encode output on the wire: {exc!r}") from None
    if len(truncated) != n:
        raise InputValueError(f"{len(truncated)} truncated flags for {n} texts")
    return M3Output(dense, sparse, colbert, offsets, num_tokens, truncated)


def _decode_sparse(rows: Sequence[Mapping[str, Any]], n: int, vocab_size: int) -> sp.csr_array:
    if len(rows) != n:
        raise InputValueError(f"{len(rows)} sparse rows for {n} texts")
    lengths = [len(r["indices"]) for r in rows]
    if any(len(r["values"]) != k for r, k in zip(rows, lengths)):
        raise InputValueError("a sparse row has different numbers of indices and values")
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter((i for r in rows for i in r["indices"]), dtype=np.int64, count=int(indptr[-1]))
    values = np.fromiter((v for r in rows for v in r["values"]), dtype=np.float32, count=int(indptr[-1]))
    if len(indices) and (indices.min() < 0 or indices.max() >= vocab_size):
        raise InputValueError(f"sparse token ids outside the vocabulary of {vocab_size}")
    matrix = sp.csr_array((values, indices, indptr), shape=(n, vocab_size))
    matrix.sort_indices()
    return matrix


def empty_output(*, dim: int, vocab_size: int, colbert_dim: int | None, dense: bool, sparse: bool, colbert: bool) -> M3Output:
    """The output of encoding no texts, shaped as the local encoder's."""
    return M3Output(
        dense=np.zeros((0, dim), dtype=np.float32) if dense else None,
        sparse=sp.csr_array((0, vocab_size), dtype=np.float32) if sparse else None,
        colbert=np.zeros((0, colbert_dim or 0), dtype=np.float32) if colbert else None,
        colbert_offsets=np.zeros(1, dtype=np.int64) if colbert else None,
        num_tokens=np.zeros(0, dtype=np.int64),
        truncated=np.zeros(0, dtype=bool),
    )


def concat_outputs(parts: Sequence[M3Output]) -> M3Output:
    """Outputs of consecutive groups of texts as one output (the client splits large calls)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    colbert = offsets = None
    if first.colbert is not None:
        blocks = [p.colbert for p in parts if p.colbert is not None]
        counts = np.concatenate([np.diff(p.colbert_offsets) for p in parts if p.colbert_offsets is not None])
        colbert = np.concatenate(blocks)
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
    return M3Output(
        dense=None if first.dense is None else np.concatenate([p.dense for p in parts if p.dense is not None]),
        sparse=None if first.sparse is None else sp.vstack([p.sparse for p in parts], format="csr"),
        colbert=colbert,
        colbert_offsets=offsets,
        num_tokens=np.concatenate([p.num_tokens for p in parts]),
        truncated=np.concatenate([p.truncated for p in parts]),
    )
