"""Throughput of concurrent query embedding with request coalescing on vs off.

    python benchmarks/concurrency.py [--checkpoint DIR] [--preset wide|tiny] [--requests 256]

N concurrent callers (asyncio tasks calling ``aencode``, the path every adapter's async method
takes) each embed one short query at a time until ``--requests`` queries are done, with
coalescing off (each call its own forward pass in a worker thread) and on (calls gathered within
``--window-ms``). Prints queries/s and the on/off ratio at 1, 8 and 32 callers, and the p50 latency
of a lone caller with both settings. Ratios are the result; absolute figures on a shared machine
are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_cpu

from m3rag import M3Encoder
from m3rag.testing import SAMPLE_TEXTS, build_checkpoint

QUERIES = [t[:60] for t in SAMPLE_TEXTS]


async def run(encoder: M3Encoder, callers: int, requests: int) -> tuple[float, list[float]]:
    """Queries per second, and each call's latency in seconds."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def caller() -> None:
        for i in counter:
            start = time.perf_counter()
            await encoder.aencode(QUERIES[i % len(QUERIES)], max_length=64)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return requests / (time.perf_counter() - start), latencies


def measure(encoder: M3Encoder, coalesce: bool, window_ms: float, callers: int, requests: int) -> tuple[float, list[float]]:
    if coalesce:
        encoder.enable_coalescing(window_ms=window_ms, max_texts=64)
    try:
        return asyncio.run(run(encoder, callers, requests))
    finally:
        encoder.disable_coalescing()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--preset", choices=("wide", "tiny"), default="wide")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--window-ms", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    checkpoint = args.checkpoint or build_checkpoint(Path(tempfile.mkdtemp()) / f"{args.preset}-m3", preset=args.preset)
    encoder = M3Encoder(checkpoint, device="cpu", dtype=args.dtype)
    print(f"CPU: {describe_cpu()}")
    print(f"checkpoint {checkpoint} ({encoder.dim} hidden, {encoder.model.config.num_hidden_layers} layers), {encoder.dtype}")
    measure(encoder, False, args.window_ms, 4, 32)  # warm-up

    print("\n| callers | coalescing off (q/s) | on (q/s) | on / off |\n|---:|---:|---:|---:|")
    for callers in (1, 8, 32):
        off = statistics.median(measure(encoder, False, args.window_ms, callers, args.requests)[0] for _ in range(args.repeats))
        on = statistics.median(measure(encoder, True, args.window_ms, callers, args.requests)[0] for _ in range(args.repeats))
        print(f"| {callers} | {off:,.1f} | {on:,.1f} | {on / off:.2f}x |")

    lone_off = measure(encoder, False, args.window_ms, 1, 64)[1]
    lone_on = measure(encoder, True, args.window_ms, 1, 64)[1]
    p50_off, p50_on = statistics.median(lone_off) * 1e3, statistics.median(lone_on) * 1e3
    print(
        f"\nlone caller p50 latency: off {p50_off:.2f} ms, on {p50_on:.2f} ms, "
        f"added {p50_on - p50_off:+.2f} ms (window {args.window_ms} ms)"
    )


if __name__ == "__main__":
    main()
