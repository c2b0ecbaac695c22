"""Where encoding time goes (bf16 on AMX), against the GEMM ceiling and FlagEmbedding fp32.

    python benchmarks/encode_profile.py [--checkpoint DIR] [--texts 64] [--dtype auto]
                                        [--batch-tokens 2048,4096,8192]

The same set as ``encode.py`` (the "wide" checkpoint, 64 texts of 32-512 tokens, all three
outputs). It prints:

1. the time of one ``encode`` call split into stages: tokenizing, padding, the transformer's op
   groups (linear GEMMs, attention, layer norms and the rest, from ``torch.profiler``), the three
   heads, and what is left (moving outputs to numpy, assembling them, Python);
2. the ceiling: the model's linear-layer FLOPs on the padded batches at the CPU's measured bf16
   GEMM rate, i.e. the speed if everything but the GEMMs were free, as a multiple of
   FlagEmbedding fp32 at its best batch size, measured in the same run;
3. the token budget per batch (``batch_tokens``) swept: bigger batches feed AMX larger matrices
   but pad more.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_cpu
from _texts import add_text_set_arguments, mixed_length_texts

from m3rag import M3Encoder
from m3rag.encoder import heads
from m3rag.encoder.batching import plan_batches
from m3rag.testing import build_checkpoint

ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)

OP_GROUPS = {
    "linear GEMMs (Q, K, V, attention out, FFN in/out)": ("addmm", "aten::mm", "linear", "matmul", "mkldnn"),
    "attention (SDPA)": ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax"),
    "layer norms": ("layer_norm",),
    "GELU": ("gelu",),
    "embeddings (lookup, positions)": ("embedding", "cumsum", "index_select", "ne", "type_as"),
}


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def stage_timers(encoder: M3Encoder, totals: dict[str, float]) -> Iterator[None]:
    """Accumulate wall time of the tokenizer, padding, the model call and each head into ``totals``."""

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[name] += time.perf_counter() - start

        return wrapper

    with contextlib.ExitStack() as stack:  # patch.object restores each attribute, instance or module
        stack.enter_context(patch.object(encoder, "tokenize", timed("tokenize", encoder.tokenize)))
        stack.enter_context(patch.object(encoder, "_collate", timed("pad and collate", encoder._collate)))
        stack.enter_context(patch.object(encoder.model, "forward", timed("transformer", encoder.model.forward)))
        for name in ("dense_vectors", "lexical_weights", "colbert_vectors"):
            stack.enter_context(patch.object(heads, name, timed(f"head: {name}", getattr(heads, name))))
        yield


def op_breakdown(encoder: M3Encoder, ids: list[list[int]], lengths: np.ndarray) -> dict[str, float]:
    """Self CPU seconds of the transformer's ops by group, over the encode call's padded batches."""
    from torch.profiler import ProfilerActivity, profile

    plan = plan_batches(lengths, batch_size=256, batch_tokens=encoder.batch_tokens)
    batches = [encoder._collate([ids[i] for i in b.tolist()]) for b in plan]
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for inputs in batches:
            encoder.model(**inputs)
    groups: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        name = event.key.lower()
        group = next((g for g, keys in OP_GROUPS.items() if any(k in name for k in keys)), "other ops (adds, copies, casts, views)")
        groups[group] += event.self_cpu_time_total / 1e6
    return dict(groups)


def linear_flops(encoder: M3Encoder, lengths: np.ndarray, batch_tokens: int) -> tuple[float, float]:
    """FLOPs of the transformer's linear layers on the padded batches, and on the real tokens alone."""
    config = encoder.model.config
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * inner)
    padded = sum(len(b) * int(lengths[b].max()) for b in plan_batches(lengths, batch_size=256, batch_tokens=batch_tokens))
    return float(per_token * padded), float(per_token * lengths.sum())


def gemm_rate(dtype: torch.dtype, rows: int, hidden: int, inner: int, repeats: int = 20) -> float:
    """FLOP/s of a bare ``[rows, hidden] x [hidden, inner]`` linear in ``dtype`` (the CPU's ceiling)."""
    x = torch.randn(rows, hidden).to(dtype)
    w = torch.randn(inner, hidden).to(dtype)
    with torch.inference_mode():
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        seconds = median_seconds(lambda: torch.nn.functional.linear(x, w), repeats)
    return 2 * rows * hidden * inner / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_text_set_arguments(parser)
    parser.add_argument("--dtype", default="auto", help="auto: bf16 where native (AMX / AVX512-BF16), else fp32")
    parser.add_argument("--batch-tokens", default="1024,2048,4096,8192", help="token budgets to sweep ('' for none)")
    parser.add_argument("--no-peer", action="store_true", help="skip FlagEmbedding (no ratio to it)")
    args = parser.parse_args()

    checkpoint = args.checkpoint or build_checkpoint(Path(tempfile.mkdtemp()) / "wide-m3", preset="wide")
    encoder = M3Encoder(checkpoint, device="cpu", dtype=args.dtype)
    texts = mixed_length_texts(encoder.tokenizer, args.texts, args.min_tokens, args.max_tokens)
    ids, _ = encoder.tokenize(texts, args.max_tokens)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = int(lengths.sum())
    print(f"CPU: {describe_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    config = encoder.model.config
    print(
        f"checkpoint {checkpoint}: hidden {config.hidden_size}, FFN {config.intermediate_size}, "
        f"{config.num_hidden_layers} layers; {len(texts)} texts, {tokens:,} tokens; m3rag {encoder.dtype}\n"
    )

    def run(batch_tokens: int | None = None) -> Any:
        return encoder.encode(texts, max_length=args.max_tokens, batch_tokens=batch_tokens, **ALL)

    peer_rate = None
    if not args.no_peer:
        from FlagEmbedding import BGEM3FlagModel

        flag = BGEM3FlagModel(str(checkpoint), use_fp16=False, devices="cpu")
        flag.encode(texts, batch_size=8, max_length=args.max_tokens, **ALL)
        peer_rate = tokens / median_seconds(lambda: flag.encode(texts, batch_size=8, max_length=args.max_tokens, **ALL), args.repeats)

    run(), run()  # warm-up: oneDNN builds its kernels for each new shape
    wall = median_seconds(run, args.repeats)
    totals: dict[str, float] = defaultdict(float)
    with stage_timers(encoder, totals):
        staged_wall = median_seconds(run, 1)
    ops = op_breakdown(encoder, ids, lengths)
    op_sum = sum(ops.values()) or 1.0
    transformer = totals.pop("transformer")

    print(f"1. One encode call, {encoder.dtype} (stages timed in one run of {staged_wall * 1e3:,.0f} ms):\n")
    print("| stage | ms | share |\n|---|---:|---:|")
    rows: list[tuple[str, float]] = [("tokenize", totals.pop("tokenize")), ("pad and collate", totals.pop("pad and collate"))]
    rows += [(f"transformer: {group}", transformer * seconds / op_sum) for group, seconds in sorted(ops.items(), key=lambda kv: -kv[1])]
    rows += sorted(totals.items())
    rows.append(("outputs to numpy, assembly, Python", staged_wall - sum(s for _, s in rows)))
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:,.1f} | {seconds / staged_wall:.0%} |")

    batch_tokens = encoder.batch_tokens
    padded_flops, real_flops = linear_flops(encoder, lengths, batch_tokens)
    rate = gemm_rate(encoder.dtype, batch_tokens, config.hidden_size, config.intermediate_size)
    ceiling = tokens / (padded_flops / rate)
    gemm_share = next((s for n, s in rows if n.startswith("transformer: linear")), 0.0)
    print(
        f"\n2. Ceiling. Linear layers: {real_flops / 1e9:,.1f} GFLOP on real tokens, {padded_flops / 1e9:,.1f} on the "
        f"padded batches ({padded_flops / real_flops - 1:.1%} padding). A bare {encoder.dtype} "
        f"[{batch_tokens} x {config.hidden_size}] x [{config.hidden_size} x {config.intermediate_size}] linear runs at "
        f"{rate / 1e9:,.0f} GFLOP/s here; the model's GEMMs ran at {padded_flops / gemm_share / 1e9 if gemm_share else 0:,.0f}."
    )
    print(f"m3rag {encoder.dtype}: {tokens / wall:,.0f} tok/s; GEMMs alone at the bare rate: {ceiling:,.0f} tok/s")
    if peer_rate:
        print(
            f"FlagEmbedding fp32 (batch 8): {peer_rate:,.0f} tok/s -> m3rag {tokens / wall / peer_rate:.2f}x, "
            f"ceiling {ceiling / peer_rate:.2f}x (mark: >= 6x)"
        )

    print(f"\n3. Token budget per batch (batch_tokens), median of {args.repeats}:\n")
    print("| batch_tokens | padding | tok/s | vs default |" + (" vs FlagEmbedding |" if peer_rate else ""))
    print("|---:|---:|---:|---:|" + ("---:|" if peer_rate else ""))
    for budget in [int(b) for b in args.batch_tokens.split(",") if b]:
        run(budget)
        speed = tokens / median_seconds(lambda b=budget: run(b), args.repeats)
        padded, real = linear_flops(encoder, lengths, budget)
        line = f"| {budget:,} | {padded / real - 1:.1%} | {speed:,.0f} | {speed * wall / tokens:.2f}x |"
        print(line + (f" {speed / peer_rate:.2f}x |" if peer_rate else ""))


if __name__ == "__main__":
    main()
