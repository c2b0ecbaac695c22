"""``encode_dataset``: a Ray Data pipeline stage whose actors each hold one M3 encoder."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from m3rag.distributed.columns import OUTPUT_COLUMNS, OUTPUTS, ColbertDType, output_columns
from m3rag.encoder.registry import default_model, looks_like_hub_id
from m3rag.errors import CheckpointNotFoundError, InputTypeError, InputValueError
from m3rag.validation import check_positive_int

__all__ = ["BLOCK_ROWS", "EncodeOptions", "EncodePlan", "M3EncodeActor", "encode_dataset", "encode_stage", "plan_encoding", "resolve_model"]

BLOCK_ROWS = 256
"""Texts handed to an actor per call by default: 64K tokens of 256-token passages, under a second
of GPU time, so Ray's per-call cost (milliseconds) stays small; a call's ColBERT output for such
passages is 128 MB in float16, about Ray's target block size."""


@dataclass(frozen=True)
class EncodeOptions:
    """What every actor of one :func:`encode_dataset` stage is told (validated on the driver)."""

    model: str
    device: str
    dtype: Any
    num_threads: int | None
    text_column: str
    outputs: tuple[str, ...]
    batch_tokens: int | None
    max_length: int | None
    colbert_dtype: ColbertDType


class M3EncodeActor:
    """The Ray Data actor: loads the shared encoder once, then encodes each block it is given.

    ``__call__(table) -> table``: the input columns, plus the columns of
    :mod:`m3rag.distributed.columns` for the asked outputs. The block's texts go to
    :meth:`M3Encoder.encode` as one call, which sorts them by length and batches them under the
    token budget.
    """

    def __init__(self, options: EncodeOptions) -> None:
        import torch

        from m3rag.encoder.m3 import M3Encoder

        if options.num_threads is not None:
            torch.set_num_threads(options.num_threads)
        self.options = options
        self.encoder: M3Encoder = M3Encoder.shared(options.model, device=options.device, dtype=options.dtype)

    def __call__(self, table: pa.Table) -> pa.Table:
        o = self.options
        clashing = sorted(set(table.column_names) & set(OUTPUT_COLUMNS))
        if clashing:
            raise InputValueError(f"the dataset already has columns {clashing}, which encoding adds: rename or drop them first")
        texts = _texts(table, o.text_column)
        out = self.encoder.encode(
            texts,
            max_length=o.max_length,  # None: the encoder's passage limit (8192)
            return_dense="dense" in o.outputs,
            return_sparse="sparse" in o.outputs,
            return_colbert_vecs="colbert" in o.outputs,
            batch_tokens=o.batch_tokens,
        )
        for name, column in output_columns(out, self.encoder.fingerprint, o.colbert_dtype).items():
            table = table.append_column(name, column)
        return table


def _texts(table: pa.Table, column: str) -> list[str]:
    if column not in table.column_names:
        raise InputValueError(f"text_column {column!r} is not in the dataset (columns: {', '.join(table.column_names)})")
    values = table.column(column)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise InputTypeError(f"text_column {column!r} must hold strings, got {values.type}")
    texts: list[str] = values.to_pylist()
    if values.null_count:
        raise InputValueError(f"text_column {column!r} has a null at row {texts.index(None)} of a block")  # type: ignore[arg-type]
    return texts


def resolve_model(model: str | os.PathLike[str] | None) -> str:
    """The model name the actors load: a hub id as given, a local directory as an absolute path
    (actors do not share the driver's working directory)."""
    if model is None:
        return default_model()
    if not isinstance(model, (str, os.PathLike)):
        raise InputTypeError(f"model must be a hub id or a directory, got {type(model).__name__}")
    name = os.fspath(model)
    if name.startswith(("http://", "https://")):
        raise InputValueError(
            f"model {name!r} is an m3rag serve address; Ray actors load the model themselves: give its hub id or directory"
        )
    if looks_like_hub_id(name):
        return name
    path = os.path.abspath(os.path.expanduser(name))
    if not os.path.isdir(path):
        raise CheckpointNotFoundError(f"model directory {name!r} does not exist (hub ids look like 'BAAI/bge-m3')", path)
    return path


def _outputs(outputs: Sequence[str] | str) -> tuple[str, ...]:
    names = (outputs,) if isinstance(outputs, str) else outputs
    if not isinstance(names, Sequence):
        raise InputTypeError(f"outputs must be a sequence of {', '.join(OUTPUTS)}, got {type(outputs).__name__}")
    for name in names:
        if name not in OUTPUTS:
            raise InputValueError(f"unknown output {name!r}; outputs are {', '.join(OUTPUTS)}")
    if not names:
        raise InputValueError(f"outputs is empty: ask for one or more of {', '.join(OUTPUTS)}")
    if len(set(names)) < len(names):
        raise InputValueError(f"outputs repeats a name: {list(names)}")
    return tuple(n for n in OUTPUTS if n in names)


def _number(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InputValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value)


def _compute(concurrency: int | tuple[int, int] | None) -> Any:
    """The actor pool: a fixed size, a ``(min, max)`` autoscaling range, or Ray's default (1 to as
    many as the cluster's resources allow)."""
    if concurrency is None:
        return ray.data.ActorPoolStrategy(min_size=1, max_size=None)
    if isinstance(concurrency, tuple):
        if len(concurrency) != 2:
            raise InputValueError(f"concurrency must be an int or a (min, max) pair, got {concurrency!r}")
        low = check_positive_int(concurrency[0], "concurrency[0]")
        high = check_positive_int(concurrency[1], "concurrency[1]")
        if low > high:
            raise InputValueError(f"concurrency {concurrency!r}: min must not exceed max")
        return ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    return ray.data.ActorPoolStrategy(size=check_positive_int(concurrency, "concurrency"))


def _check_dtype(dtype: Any) -> None:
    if dtype is None or dtype == "auto":
        return
    import torch

    from m3rag.encoder.device import resolve_dtype

    resolve_dtype(dtype, torch.device("cpu"))  # names and types; the device-specific checks run on the actors


@dataclass(frozen=True)
class EncodePlan:
    """Validated arguments of an encoding stage: what the actors are told, and what they reserve."""

    options: EncodeOptions
    concurrency: int | tuple[int, int] | None
    num_gpus: float
    num_cpus: float
    block_rows: int


def plan_encoding(
    *,
    text_column: str = "text",
    model: str | os.PathLike[str] | None = None,
    outputs: Sequence[str] = OUTPUTS,
    num_gpus: float = 1,
    concurrency: int | tuple[int, int] | None = None,
    batch_tokens: int | None = None,
    dtype: Any = None,
    max_length: int | None = None,
    num_cpus: float | None = None,
    block_rows: int = BLOCK_ROWS,
    colbert_dtype: ColbertDType = "float16",
) -> EncodePlan:
    """Check :func:`encode_dataset`'s arguments (typed errors naming the argument) without Ray running."""
    if not isinstance(text_column, str) or not text_column:
        raise InputTypeError(f"text_column must be a non-empty str, got {text_column!r}")
    gpus = _number(num_gpus, "num_gpus", positive=False)
    cpus = _number(num_cpus, "num_cpus", positive=True) if num_cpus is not None else 1.0
    if colbert_dtype not in ("float16", "float32"):
        raise InputValueError(f"colbert_dtype must be 'float16' or 'float32', got {colbert_dtype!r}")
    check_positive_int(batch_tokens, "batch_tokens", minimum=2, optional=True)
    check_positive_int(max_length, "max_length", minimum=2, optional=True)
    check_positive_int(block_rows, "block_rows")
    _check_dtype(dtype)
    _compute(concurrency)
    options = EncodeOptions(
        model=resolve_model(model), device="cuda" if gpus > 0 else "cpu", dtype=dtype, num_threads=None if gpus > 0 else max(1, int(cpus)),
        text_column=text_column, outputs=_outputs(outputs), batch_tokens=batch_tokens, max_length=max_length, colbert_dtype=colbert_dtype,
    )  # fmt: skip
    return EncodePlan(options, concurrency, gpus, cpus, block_rows)


def encode_dataset(
    ds: Any,
    *,
    text_column: str = "text",
    model: str | os.PathLike[str] | None = None,
    outputs: Sequence[str] = OUTPUTS,
    num_gpus: float = 1,
    concurrency: int | tuple[int, int] | None = None,
    batch_tokens: int | None = None,
    dtype: Any = None,
    max_length: int | None = None,
    num_cpus: float | None = None,
    block_rows: int = BLOCK_ROWS,
    colbert_dtype: ColbertDType = "float16",
) -> Any:
    """``ds`` (a ``ray.data.Dataset`` with a string column ``text_column``) with its texts encoded.

    A pool of actors, each holding one encoder (``M3Encoder.shared(model, device, dtype)``), takes
    ``block_rows`` texts per call, sorts them by length and encodes them under ``batch_tokens``
    padded tokens per forward pass. The result keeps every input column and adds, for the
    ``outputs`` asked for, the columns of :mod:`m3rag.distributed.columns`: ``dense``
    (``fixed_size_list<float32>[d]``), ``sparse_indices`` / ``sparse_values`` (``list<int32>`` /
    ``list<float32>``), ``colbert`` (``list<fixed_size_list<float16>[c]>``, or float32 with
    ``colbert_dtype``), ``num_tokens``, ``truncated`` and ``m3rag_model`` (the fingerprint). Lazy,
    like every Ray Data transform: write it (``.write_parquet(dir)``) or read it into an index
    (:func:`~m3rag.distributed.add_to_index`).

    - ``model``: hub id or directory (default ``$M3RAG_MODEL`` on the driver, else BAAI/bge-m3);
      every node must be able to load it (the Hugging Face cache, a download, or a shared path).
    - ``num_gpus``: GPUs per actor (fractions share a GPU); ``0`` runs the actors on CPU with
      ``num_cpus`` cores (default 1) each, and as many torch threads.
    - ``concurrency``: actors: a number, a ``(min, max)`` range, or ``None`` (1 up to what the
      cluster's resources allow, growing with the backlog).
    - ``dtype``, ``batch_tokens``, ``max_length``: as for :meth:`M3Encoder.encode` (defaults: fp16
      on GPU and fp32 on CPU; the device's token budget; 8192 tokens).

    A killed actor is restarted and its unfinished blocks are encoded again (Ray's actor pool
    retries them); every row is output once. Bad arguments raise :class:`~m3rag.InputTypeError`
    / :class:`~m3rag.InputValueError` here, before anything runs.
    """
    plan = plan_encoding(
        text_column=text_column, model=model, outputs=outputs, num_gpus=num_gpus, concurrency=concurrency, batch_tokens=batch_tokens,
        dtype=dtype, max_length=max_length, num_cpus=num_cpus, block_rows=block_rows, colbert_dtype=colbert_dtype,
    )  # fmt: skip
    return encode_stage(ds, plan)


def encode_stage(
    ds: Any,
    plan: EncodePlan,
    actor: type[M3EncodeActor] | None = None,
    actor_kwargs: dict[str, Any] | None = None,
    *,
    whole_blocks: bool = False,
) -> Any:
    """The ``map_batches`` stage of ``plan`` on ``ds``; ``actor`` (a subclass of
    :class:`M3EncodeActor`, constructed with ``actor_kwargs`` too) replaces the default one, and
    ``whole_blocks`` hands each input block to one call instead of ``block_rows`` rows."""
    if not isinstance(ds, ray.data.Dataset):
        raise InputTypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    schema = ds.schema(fetch_if_missing=False)
    if schema is not None:
        columns = list(schema.names)
        if plan.options.text_column not in columns:
            raise InputValueError(f"text_column {plan.options.text_column!r} is not in the dataset (columns: {', '.join(columns)})")
        clashing = sorted(set(columns) & set(OUTPUT_COLUMNS))
        if clashing:
            raise InputValueError(f"the dataset already has columns {clashing}, which encoding adds: rename or drop them first")
    return ds.map_batches(
        actor or M3EncodeActor,
        fn_constructor_kwargs={"options": plan.options, **(actor_kwargs or {})},
        batch_format="pyarrow",
        batch_size=None if whole_blocks else plan.block_rows,
        compute=_compute(plan.concurrency),
        num_gpus=plan.num_gpus if plan.num_gpus > 0 else None,
        num_cpus=plan.num_cpus,
    )
