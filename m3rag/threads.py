"""The thread policy: which pool does the heavy work, and how many threads each pool gets.

A process that uses m3rag holds up to four thread pools: torch's OpenMP (the encoder, ColBERT
rerank, flat dense search), numpy/scipy's OpenBLAS (pthreads), faiss's own OpenMP runtime (HNSW)
and the MKL threads torch drives. Each defaults to one thread per core, and OpenMP and OpenBLAS
workers spin for a while after each call. On a small or shared machine they fight: measured on 2
cores (benchmarks/retrieval.py, section 7), a 20 x 4,000 x 256 numpy product took 16-28 ms
with the default pools and 1.7 ms with one thread per pool, a 20-query faiss HNSW search 7-12 ms
against 0.7-0.9 ms.

m3rag's side of the policy: every matrix product on the query path runs in torch (one pool);
numpy work there is small and single-threaded; faiss is only called for HNSW. Your side is one
call, :func:`set_thread_policy`, before the work starts:

- ``"server"`` (many requests, latency first; also any machine with <= 4 cores that others share):
  every pool one thread; scale with processes or ``m3rag serve``'s coalescing. Call it before torch
  is imported (or set ``OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE`` in the environment): then
  the OpenMP runtimes also sleep instead of spinning.
- ``"notebook"`` (one user, mixed work): torch keeps every core for encoding; numpy's BLAS and
  faiss get one thread, so they never wait on a worker that torch keeps spinning.
- ``"batch"`` (bulk encoding or an HNSW build): torch and faiss get every core, numpy's BLAS one.

The calls change process-wide settings, which is why m3rag never makes them on its own.
"""

from __future__ import annotations

import os
import sys
from typing import Literal

__all__ = ["ThreadPolicy", "set_thread_policy"]

ThreadPolicy = Literal["server", "notebook", "batch"]


def set_thread_policy(policy: ThreadPolicy, cores: int | None = None) -> dict[str, int]:
    """Apply ``policy`` (module docstring) to this process; returns the threads given to each pool.

    ``cores`` defaults to the CPUs this process may run on. Pools whose library is not installed
    are skipped; numpy's BLAS is limited through ``threadpoolctl`` when it is installed.
    """
    if policy not in ("server", "notebook", "batch"):
        raise ValueError(f"policy must be 'server', 'notebook' or 'batch', got {policy!r}")
    if not cores:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch_threads = 1 if policy == "server" else cores
    faiss_threads = cores if policy == "batch" else 1
    if policy == "server" and "torch" not in sys.modules:  # read once, when the OpenMP runtimes load
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    applied = {"torch": torch_threads, "blas": 1, "faiss": faiss_threads}
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        del applied["torch"]
    try:
        import faiss

        faiss.omp_set_num_threads(faiss_threads)
    except ImportError:  # pragma: no cover - faiss is a dependency
        del applied["faiss"]
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        threadpool_limits(1, user_api="blas")
    except ImportError:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # effective only if numpy loads later
    return applied
