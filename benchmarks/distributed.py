"""Encoding on Ray Data (m3rag.distributed) vs the in-process encoder: same checkpoint, same texts, same run.

    python benchmarks/distributed.py [--checkpoint DIR] [--preset wide|tiny] [--texts 384] [--workers 1 2]
    python benchmarks/distributed.py --quick       # tiny checkpoint, few texts: a smoke run

A local Ray with as many CPUs as the machine has cores runs ``encode_dataset`` with 1 and 2 CPU
actors, the cores split between them (each actor's torch uses its share as threads), against one
``M3Encoder`` in this process using every core. All three outputs, fp32, texts of --min-tokens to
--max-tokens tokens. Printed: the CPU (model, cores, SIMD flags), then per setup

- first block: seconds until the first encoded block reaches the driver (actors start and load the
  model first: the job waits for all of them);
- wall: tokens / the whole job's seconds, as a user sees it;
- steady: tokens / seconds between the first and the last block reaching the driver;
- Ray's time per block: the encoded blocks passed through a no-op actor, between arrivals;
- ingest: ``add_to_index`` of the encoded rows into a local index (the driver's share);

and an estimate for N GPUs from those figures. Absolute figures on a shared machine are noise;
ratios within the run are the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.compute as pc
from _machine import describe_cpu
from _texts import mixed_length_texts

ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class PassThrough:
    """A no-op actor: what Ray Data costs per block, without a model."""

    def __call__(self, table: Any) -> Any:
        return table


def stream(ds: Any) -> tuple[float, float, float, list[Any]]:
    """Run ``ds`` and time each output block's arrival here: ``(seconds to the first block, wall
    seconds, steady tokens/s between the first and the last block, the blocks)``."""
    start = time.perf_counter()
    arrivals: list[float] = []
    blocks: list[Any] = []
    for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        arrivals.append(time.perf_counter() - start)
        blocks.append(table)
    tokens = [int(pc.sum(b.column("num_tokens")).as_py()) for b in blocks]
    steady = (sum(tokens) - tokens[0]) / (arrivals[-1] - arrivals[0]) if len(blocks) > 1 else float("nan")
    return arrivals[0], arrivals[-1], steady, blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="a bge-m3 layout directory (default: build --preset)")
    parser.add_argument("--preset", choices=("wide", "tiny"), default="wide", help="test checkpoint: wide = bge-m3's width, 4 layers")
    parser.add_argument("--texts", type=int, default=384)
    parser.add_argument("--min-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--block-rows", type=int, default=16, help="texts per actor call")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="tiny checkpoint, 64 texts: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.texts, args.block_rows, args.max_tokens = "tiny", 64, 4, 128

    import ray
    import torch

    from m3rag import M3Encoder, M3Index
    from m3rag.distributed import add_to_index, encode_dataset
    from m3rag.testing import build_checkpoint

    checkpoint = args.checkpoint or build_checkpoint(Path(tempfile.mkdtemp()) / f"{args.preset}-m3", preset=args.preset)
    cores = os.cpu_count() or 1
    encoder = M3Encoder(checkpoint, device="cpu", dtype="float32")
    texts = mixed_length_texts(encoder.tokenizer, args.texts, args.min_tokens, args.max_tokens)
    tokens = int(sum(map(len, encoder.tokenize(texts, args.max_tokens)[0])))
    blocks = -(-len(texts) // args.block_rows)
    layers = encoder.model.config.num_hidden_layers
    print(f"CPU: {describe_cpu()}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"checkpoint {checkpoint}: hidden {encoder.dim}, {layers} layers; torch {torch.__version__}, ray {ray.__version__}")
    print(f"{len(texts)} texts, {tokens:,} tokens ({args.min_tokens}-{args.max_tokens} each), all three outputs, fp32; "
          f"{args.block_rows} texts per actor call ({blocks} blocks)\n")  # fmt: skip

    torch.set_num_threads(cores)
    encoder.encode(texts[:8], max_length=args.max_tokens, **ALL)  # warm-up
    local = tokens / timed(lambda: encoder.encode(texts, max_length=args.max_tokens, **ALL))[0]

    ray.init(num_cpus=cores, include_dashboard=False, logging_level="warning")
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    rows = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    results: list[tuple[str, float, float, float]] = [(f"in-process M3Encoder, {cores} threads", float("nan"), local, local)]
    try:
        for workers in args.workers:
            share = max(1, cores // workers)
            ds = ray.data.from_items(rows, override_num_blocks=blocks)
            job = encode_dataset(ds, model=checkpoint, num_gpus=0, num_cpus=share, concurrency=workers, dtype="float32",
                                 max_length=args.max_tokens, block_rows=args.block_rows)  # fmt: skip
            job.context.wait_for_min_actors_s = 600  # every actor loaded before the first block: steady rates compare
            first, wall, steady, encoded = stream(job)
            label = f"Ray, {workers} CPU worker{'s' if workers > 1 else ''} x {share} thread{'s' if share > 1 else ''}"
            results.append((label, first, tokens / wall, steady))
        per_worker = results[1][3] / args.workers[0]
        pool = ray.data.ActorPoolStrategy(size=1)
        first_noop, last_noop, _, passed = stream(
            ray.data.from_arrow(encoded).map_batches(PassThrough, batch_format="pyarrow", compute=pool)
        )
        overhead = (last_noop - first_noop) / max(len(passed) - 1, 1)
    finally:
        ray.shutdown()
    index = M3Index(encoder)
    ingest_seconds, stored = timed(lambda: add_to_index(index, encoded))
    assert stored == len(texts)

    print(f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print("| setup | first block s | wall tokens/s | steady tokens/s | steady vs in-process |")
    print("|---|---:|---:|---:|---:|")
    for name, first, wall_rate, steady in results:
        start = "-" if first != first else f"{first:.1f}"
        print(f"| {name} | {start} | {wall_rate:,.0f} | {steady:,.0f} | {steady / local:.2f}x |")
    ingest = tokens / ingest_seconds
    print(f"\nRay's time per block (a no-op actor over the {len(passed)} encoded blocks, between arrivals): {overhead * 1e3:.1f} ms")
    rate = len(texts) / ingest_seconds
    print(f"driver ingest (add_to_index, local index, ColBERT kept): {rate:,.0f} passages/s, {ingest:,.0f} tokens/s")
    block_tokens = tokens / blocks
    print(f"\nEstimate for N actors at r tokens/s each, b = {block_tokens:,.0f} tokens per block, o = {overhead * 1e3:.1f} ms per block:")
    print("throughput(N) = min(N * r * b / (b + o * r), driver ingest); each actor's start-up (model load) is paid once, in parallel.\n")
    rates = [("measured CPU worker", per_worker)] + [("assumed GPU", float(r)) for r in (20_000, 100_000)]
    print("| r tokens/s | b / (b + o r) | N=1 | N=2 | N=4 | N=8 | N=16 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, r in rates:
        efficiency = block_tokens / (block_tokens + overhead * r)
        cells = [f"{min(n * r * efficiency, ingest):,.0f}" for n in (1, 2, 4, 8, 16)]
        print(f"| {label} {r:,.0f} | {efficiency:.2f} | " + " | ".join(cells) + " |")
    print("\n(tokens/s; a figure equal to the ingest rate is the driver's limit: write Parquet from the actors and ingest separately)")


if __name__ == "__main__":
    main()
