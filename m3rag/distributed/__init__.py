"""Encode a corpus on many GPUs and machines with Ray Data (``pip install "m3rag[ray]"``).

- :func:`encode_dataset`: a ``ray.data.Dataset`` of texts through a pool of actors, each holding
  one M3 encoder; the dataset gains dense, sparse and ColBERT columns (layout:
  :mod:`m3rag.distributed.columns`), to write with Ray's writers (``.write_parquet(dir)``).
- :func:`add_to_index`: encoded rows (that dataset, or its Parquet files read back) into an
  :class:`~m3rag.M3Index` without encoding again; :func:`iter_encoded` and :func:`to_output` give
  the same rows as :class:`~m3rag.M3Output` batches.
- :class:`FileEncoder`: what ``m3rag index PATH --ray`` runs: files read here, cut into passages
  and encoded on Ray; :func:`ray_session` connects to (or starts) Ray for it.

Neither ``import m3rag`` nor the command line imports this package unless Ray is asked for.
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
    import ray
    import ray.data  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f'm3rag.distributed needs Ray Data: pip install "m3rag[ray]" ({exc})') from exc

from m3rag.distributed.columns import OUTPUT_COLUMNS, OUTPUTS, output_columns, to_output
from m3rag.distributed.encode import BLOCK_ROWS, encode_dataset
from m3rag.distributed.files import FileEncoder, cluster_actors, ray_session
from m3rag.distributed.ingest import EncodedBatch, add_to_index, iter_encoded

__all__ = [
    "BLOCK_ROWS",
    "OUTPUTS",
    "OUTPUT_COLUMNS",
    "EncodedBatch",
    "FileEncoder",
    "add_to_index",
    "cluster_actors",
    "encode_dataset",
    "iter_encoded",
    "output_columns",
    "ray_session",
    "to_output",
]
