"""Encoding throughput: m3rag vs FlagEmbedding's BGEM3FlagModel, same checkpoint, same texts.

    python benchmarks/encode.py [--checkpoint DIR] [--texts 64] [--repeats 3] [--avx2]

Without --checkpoint it builds the "wide" test checkpoint (bge-m3's width, 4 layers, random
weights). All three outputs are asked for, fp32 unless stated. FlagEmbedding is first run at
several batch sizes to find its best; then FlagEmbedding (best batch size), m3rag fp32 and m3rag
bf16 (with and without its fused CPU layers) run interleaved, and the medians are compared.
Ratios are the result; absolute tokens/s on a shared machine are noise. Needs the 'test' extra
(FlagEmbedding).

The CPU's matrix features are printed with the figures. ``--avx2`` runs the benchmark under ISA
caps that make torch, oneDNN and MKL behave as on an AVX2-only CPU (no AVX-512, no AMX, bf16
emulated): what ``dtype="auto"`` picks there, and what each path costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import AVX2_ENV, describe_cpu
from _texts import add_text_set_arguments, mixed_length_texts

from m3rag import M3Encoder
from m3rag.testing import build_checkpoint

ALL = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def max_diffs(ours: Any, theirs: dict[str, Any]) -> dict[str, float]:
    dense = float(np.abs(ours["dense_vecs"] - theirs["dense_vecs"]).max())
    colbert = max(float(np.abs(a - b).max()) for a, b in zip(ours["colbert_vecs"], theirs["colbert_vecs"]))
    sparse = 0.0
    for a, b in zip(ours["lexical_weights"], theirs["lexical_weights"]):
        b = {int(k): float(v) for k, v in b.items()}
        sparse = max([sparse, *(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))])
    return {"dense": dense, "sparse": sparse, "colbert": colbert}


RSS_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from _texts import add_text_set_arguments, mixed_length_texts
kind, checkpoint, n, low, high = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
if kind == "flag":
    from FlagEmbedding import BGEM3FlagModel
    model = BGEM3FlagModel(checkpoint, use_fp16=False, devices="cpu")
    texts = mixed_length_texts(model.tokenizer, n, low, high)
    model.encode(texts, batch_size=8, max_length=high, return_dense=True, return_sparse=True, return_colbert_vecs=True)
else:
    from m3rag import M3Encoder
    model = M3Encoder(checkpoint, device="cpu", dtype=kind)
    texts = mixed_length_texts(model.tokenizer, n, low, high)
    model.encode(texts, max_length=high, return_dense=True, return_sparse=True, return_colbert_vecs=True)
# VmHWM: this process's own peak (ru_maxrss would include the parent's pages from before exec)
print(json.dumps(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))))
"""


def peak_rss_mb(kind: str, checkpoint: Path, args: argparse.Namespace) -> float:
    """Peak resident memory (MB) of a fresh process that loads the model and encodes the set."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_CHILD,
            str(Path(__file__).resolve().parent),
            kind,
            str(checkpoint),
            str(args.texts),
            str(args.min_tokens),
            str(args.max_tokens),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1]) / 1024


def latency_ms(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """p50 and p95 of ``calls`` timed calls, in milliseconds."""
    times = sorted(timed(fn)[0] * 1e3 for _ in range(calls))
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_text_set_arguments(parser)
    parser.add_argument("--flag-batch-sizes", default="8,16,32,256")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--only-memory", action="store_true", help="only the peak-RSS subprocesses")
    parser.add_argument("--avx2", action="store_true", help="run as on an AVX2-only CPU (ISA caps in a fresh process)")
    args = parser.parse_args()
    if args.avx2 and os.environ.get("ONEDNN_MAX_CPU_ISA") != AVX2_ENV["ONEDNN_MAX_CPU_ISA"]:
        argv = [sys.executable, str(Path(__file__).resolve()), *(a for a in sys.argv[1:] if a != "--avx2")]
        os.execve(sys.executable, argv, {**os.environ, **AVX2_ENV})  # the caps are read when the libraries load

    from FlagEmbedding import BGEM3FlagModel

    checkpoint = args.checkpoint or build_checkpoint(Path(tempfile.mkdtemp()) / "wide-m3", preset="wide")
    if args.only_memory:
        print_memory(Path(checkpoint), args)
        return
    fp32 = M3Encoder(checkpoint, device="cpu", dtype="float32")
    bf16 = M3Encoder(checkpoint, device="cpu", dtype="bfloat16")
    with patch.dict(os.environ, {"M3RAG_CPU_FUSION": "0"}):  # the same bf16 model on HF's plain layers: what the fusion gains
        bf16_plain = M3Encoder(checkpoint, device="cpu", dtype="bfloat16")
    auto = str(M3Encoder(checkpoint, device="cpu", dtype="auto").dtype).removeprefix("torch.")
    print(f"CPU: {describe_cpu()}; dtype='auto' picks {auto} here")
    flag = BGEM3FlagModel(str(checkpoint), use_fp16=False, devices="cpu")
    texts = mixed_length_texts(fp32.tokenizer, args.texts, args.min_tokens, args.max_tokens)
    max_length = args.max_tokens
    tokens = int(sum(map(len, fp32.tokenize(texts, max_length)[0])))
    print(f"checkpoint {checkpoint}: hidden {fp32.dim}, {fp32.model.config.num_hidden_layers} layers")
    print(f"{len(texts)} texts, {tokens} tokens ({args.min_tokens}-{args.max_tokens} each), all three outputs\n")

    def run_flag(batch_size: int) -> Any:
        return flag.encode(texts, batch_size=batch_size, max_length=max_length, **ALL)

    def run_m3(encoder: M3Encoder) -> Any:
        return encoder.encode(texts, max_length=max_length, **ALL)

    run_flag(8), run_m3(fp32)  # warm-up
    if auto == "bfloat16":
        run_m3(bf16), run_m3(bf16_plain)
    flag_sizes = [int(b) for b in args.flag_batch_sizes.split(",")]
    sweep = {b: tokens / timed(lambda b=b: run_flag(b))[0] for b in flag_sizes}
    best = max(sweep, key=sweep.__getitem__)
    print(
        "FlagEmbedding batch-size sweep (one run each): "
        + ", ".join(f"{b}: {v:,.0f} tok/s" for b, v in sweep.items())
        + f" -> best {best}\n"
    )

    contenders: dict[str, Callable[[], Any]] = {f"FlagEmbedding fp32, batch_size={best}": lambda: run_flag(best)}
    if 256 in flag_sizes and best != 256:
        contenders["FlagEmbedding fp32, batch_size=256 (default)"] = lambda: run_flag(256)
    contenders["m3rag fp32"] = lambda: run_m3(fp32)
    if auto == "bfloat16":  # where bf16 would be emulated (auto picks float32) it costs minutes and is not a path m3rag takes
        contenders["m3rag bf16"] = lambda: run_m3(bf16)
        contenders["m3rag bf16, HF layers unfused (M3RAG_CPU_FUSION=0)"] = lambda: run_m3(bf16_plain)
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            seconds, outputs[name] = timed(fn)
            rates[name].append(tokens / seconds)

    peer = next(iter(contenders))
    base = statistics.median(rates[peer])
    targets = {"m3rag bf16": ">= 6x"}
    print(f"| run | tokens/s (median of {args.repeats}) | vs {peer} | target |")
    print("|---|---:|---:|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / base:.2f}x | {targets.get(name, '')} |")

    diffs = max_diffs(outputs["m3rag fp32"], outputs[peer])
    print("\nm3rag fp32 vs FlagEmbedding fp32, max abs difference: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    if "m3rag bf16" in outputs:
        a, b = outputs["m3rag fp32"].dense, outputs["m3rag bf16"].dense
        cos = (a * b).sum(axis=1)
        print(f"m3rag bf16 vs fp32 dense cosine: mean {cos.mean():.5f}, worst {cos.min():.5f}")
    else:
        print("m3rag bf16: not run, it would be emulated on this CPU (dtype='auto' picks float32)")

    query = "What does BGE M3 give for hybrid retrieval?"
    print(f"\nSingle short query (embed_query, dense), {args.latency_calls} calls each:\n")
    print("| run | p50 ms | p95 ms |\n|---|---:|---:|")
    single: dict[str, Callable[[], Any]] = {
        "FlagEmbedding fp32": lambda: flag.encode_queries([query], return_dense=True),
        "m3rag fp32": lambda: fp32.encode_queries(query),
    }
    if auto == "bfloat16":
        single["m3rag bf16"] = lambda: bf16.encode_queries(query)
    for name, fn in single.items():
        p50, p95 = latency_ms(fn, args.latency_calls)
        print(f"| {name} | {p50:.1f} | {p95:.1f} |")

    if not args.no_memory:
        print_memory(Path(checkpoint), args)


def print_memory(checkpoint: Path, args: argparse.Namespace) -> None:
    print("\nPeak RSS of a fresh process loading the model and encoding the set:\n")
    print("| run | peak RSS MB |\n|---|---:|")
    for name, kind in (("FlagEmbedding fp32, batch_size=8", "flag"), ("m3rag fp32", "float32"), ("m3rag bf16", "bfloat16")):
        print(f"| {name} | {peak_rss_mb(kind, checkpoint, args):,.0f} |")


if __name__ == "__main__":
    main()
