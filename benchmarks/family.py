"""The BGE family: m3rag's BGEEncoder vs FlagEmbedding's FlagModel, and BGEReranker vs FlagReranker,
same checkpoints, same texts, fp32 and bf16, in one run.

    python benchmarks/family.py [--quick] [--texts 128] [--pairs 128] [--repeats 3]

Without --dense / --reranker it builds test checkpoints in the BAAI layouts: "wide" (width 1024,
as bge-large-en-v1.5 and bge-reranker-v2-m3, 4 layers, random weights), or "tiny" with --quick
(a smoke run: seconds, numbers meaningless). FlagEmbedding runs first at several batch sizes to
find its best; then FlagEmbedding (best and default batch size), m3rag fp32 and m3rag bf16 run
interleaved, and medians are compared. Ratios are the result; absolute rates on a shared machine
are noise. Fidelity: m3rag fp32 against FlagEmbedding (max abs difference), bf16 against fp32
(dense cosine; reranker logit error and per-query ranking agreement). Needs the 'test' extra.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # FlagEmbedding's progress bars; read when tqdm is imported

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _texts import mixed_length_texts

from m3rag import BGEEncoder, BGEReranker
from m3rag.encoder.device import cpu_has_fast_bf16
from m3rag.encoder.instructions import BGE_EN_QUERY_INSTRUCTION
from m3rag.testing import build_bert_checkpoint, build_reranker_checkpoint
from m3rag.testing.fidelity import dense_cosines


def quiet() -> contextlib.AbstractContextManager[Any]:
    """Swallow stderr (FlagEmbedding's tqdm bars, which ignore TQDM_DISABLE)."""
    return contextlib.redirect_stderr(io.StringIO())


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def cpu_description() -> str:
    """The CPU model, the SIMD/matrix flags that matter for fp32 and bf16, and torch's threads."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown CPU", platform.processor()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16") if f in flags]
    native = "native bf16 (AMX/AVX512-BF16)" if cpu_has_fast_bf16() else "no native bf16: bf16 is emulated and slow here"
    return f"{model}; flags: {' '.join(shown) or 'n/a'}; {native}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def race(contenders: dict[str, Callable[[], Any]], work: int, repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Median rate (work units per second) of each contender over ``repeats`` interleaved rounds."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in contenders.items():
            seconds, outputs[name] = timed(fn)
            rates[name].append(work / seconds)
    return {name: statistics.median(values) for name, values in rates.items()}, outputs


def table(title: str, unit: str, rates: dict[str, float], repeats: int) -> None:
    peer = next(iter(rates))
    print(f"\n{title}\n\n| run | {unit} (median of {repeats}) | vs {peer} |\n|---|---:|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates[peer]:.2f}x |")


def sweep(run: Callable[[int], Any], sizes: list[int], work: int) -> int:
    """FlagEmbedding's best batch size (one run each), printed."""
    rates = {b: work / timed(lambda b=b: run(b))[0] for b in sizes}
    best = max(rates, key=rates.__getitem__)
    print("FlagEmbedding batch-size sweep: " + ", ".join(f"{b}: {v:,.0f}" for b, v in rates.items()) + f" -> best {best}")
    return best


def dense_section(checkpoint: Path, args: argparse.Namespace) -> None:
    from FlagEmbedding import FlagModel

    fp32 = BGEEncoder(checkpoint, device="cpu", dtype="float32", query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION)
    bf16 = BGEEncoder(checkpoint, device="cpu", dtype="bfloat16", query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION)
    flag = FlagModel(str(checkpoint), use_fp16=False, devices="cpu", query_instruction_for_retrieval=BGE_EN_QUERY_INSTRUCTION)
    texts = mixed_length_texts(fp32.tokenizer, args.texts, args.min_tokens, args.max_tokens)
    tokens = int(sum(map(len, fp32.tokenize(texts, args.max_tokens)[0])))
    print(
        f"\n## Dense: BGEEncoder vs FlagModel(use_fp16=False)\n\ncheckpoint {checkpoint}: BERT, hidden {fp32.dim}, "
        f"{fp32.config.num_hidden_layers} layers; {len(texts)} passages, {tokens} tokens ({args.min_tokens}-{args.max_tokens} each)"
    )

    def run_flag(batch_size: int) -> Any:
        with quiet():  # FlagModel's progress bars
            return flag.encode_corpus(texts, batch_size=batch_size, max_length=args.max_tokens)

    run_flag(32), fp32.encode_corpus(texts), bf16.encode_corpus(texts)  # warm-up
    best = sweep(run_flag, args.flag_batch_sizes, tokens)
    contenders: dict[str, Callable[[], Any]] = {
        f"FlagModel fp32, batch_size={best}": lambda: run_flag(best),
        "FlagModel fp32, batch_size=256 (default)": lambda: run_flag(256),
        "m3rag BGEEncoder fp32": lambda: fp32.encode_corpus(texts, max_length=args.max_tokens),
        "m3rag BGEEncoder bf16": lambda: bf16.encode_corpus(texts, max_length=args.max_tokens),
    }
    rates, outputs = race(contenders, tokens, args.repeats)
    table("Passages (encode_corpus):", "tokens/s", rates, args.repeats)
    reference = outputs[next(iter(contenders))]
    print(
        f"\nfidelity: m3rag fp32 vs FlagModel max abs difference {np.abs(outputs['m3rag BGEEncoder fp32'] - reference).max():.1e}; "
        + _cosines(dense_cosines(outputs["m3rag BGEEncoder fp32"], outputs["m3rag BGEEncoder bf16"]))
    )
    queries = texts[: max(8, args.texts // 8)]
    with quiet():
        q_ours, q_flag = fp32.encode_queries(queries), flag.encode_queries(queries)
    print(f"queries (with the bge-*-en instruction): m3rag fp32 vs FlagModel max abs difference {np.abs(q_ours - q_flag).max():.1e}")


def _cosines(cosines: np.ndarray) -> str:
    return f"bf16 vs fp32 cosine mean {cosines.mean():.5f}, worst {cosines.min():.5f}"


def reranker_section(checkpoint: Path, args: argparse.Namespace) -> None:
    from FlagEmbedding import FlagReranker

    fp32 = BGEReranker(checkpoint, device="cpu", dtype="float32")
    bf16 = BGEReranker(checkpoint, device="cpu", dtype="bfloat16")
    flag = FlagReranker(str(checkpoint), devices="cpu")
    n_queries = max(2, args.pairs // args.per_query)
    queries = mixed_length_texts(fp32.tokenizer, n_queries, 8, 32, seed=1)
    passages = mixed_length_texts(fp32.tokenizer, n_queries * args.per_query, args.min_tokens, args.max_tokens, seed=2)
    pairs = [(queries[i // args.per_query], p) for i, p in enumerate(passages)]
    ids, _, _ = fp32.pair_ids(pairs, args.max_tokens, args.max_tokens * 3 // 4)
    tokens = int(sum(map(len, ids)))
    print(
        f"\n## Reranker: BGEReranker vs FlagReranker\n\ncheckpoint {checkpoint}: XLM-R sequence classification (bge-reranker-v2-m3 "
        f"layout), hidden {fp32.config.hidden_size}, {fp32.config.num_hidden_layers} layers; {n_queries} queries x "
        f"{args.per_query} passages = {len(pairs)} pairs, {tokens} tokens (max_length {args.max_tokens})"
    )

    def run_flag(batch_size: int) -> Any:
        with quiet():  # FlagReranker's progress bars
            return flag.compute_score(pairs, batch_size=batch_size, max_length=args.max_tokens)

    run_flag(32), fp32.compute_score(pairs), bf16.compute_score(pairs)  # warm-up
    best = sweep(run_flag, args.flag_batch_sizes, tokens)
    contenders: dict[str, Callable[[], Any]] = {
        f"FlagReranker fp32, batch_size={best}": lambda: run_flag(best),
        "FlagReranker fp32, batch_size=128 (default)": lambda: run_flag(128),
        "m3rag BGEReranker fp32": lambda: fp32.compute_score(pairs, max_length=args.max_tokens),
        "m3rag BGEReranker bf16": lambda: bf16.compute_score(pairs, max_length=args.max_tokens),
    }
    rates, outputs = race(contenders, tokens, args.repeats)
    table("Pairs (compute_score):", "tokens/s", rates, args.repeats)
    reference = np.asarray(outputs[next(iter(contenders))])
    ours, low = np.asarray(outputs["m3rag BGEReranker fp32"]), np.asarray(outputs["m3rag BGEReranker bf16"])
    top1, tau = ranking_agreement(ours, low, args.per_query)
    print(
        f"\nfidelity: m3rag fp32 vs FlagReranker max abs difference {np.abs(ours - reference).max():.1e}; bf16 vs fp32 logits: "
        f"max abs error {np.abs(low - ours).max():.3f} (logit spread {ours.std():.3f}), same top-1 for {top1:.0%} of queries, "
        f"mean Kendall tau {tau:.3f}"
    )


def ranking_agreement(reference: np.ndarray, candidate: np.ndarray, per_query: int) -> tuple[float, float]:
    """Share of queries whose best passage is the same, and the mean Kendall tau of the orders."""
    same, taus = [], []
    for start in range(0, len(reference), per_query):
        a, b = reference[start : start + per_query], candidate[start : start + per_query]
        same.append(int(a.argmax() == b.argmax()))
        i, j = np.triu_indices(len(a), 1)
        concordant = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
        taus.append(float(concordant.mean()) if len(i) else 1.0)
    return float(np.mean(same)), float(np.mean(taus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny checkpoints and few inputs: a smoke run (seconds), numbers meaningless")
    parser.add_argument("--dense", type=Path, default=None, help="a bge-*-en-v1.5-layout checkpoint (default: built)")
    parser.add_argument("--reranker", type=Path, default=None, help="a bge-reranker-layout checkpoint (default: built)")
    parser.add_argument("--texts", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--per-query", type=int, default=16, help="passages per query in the reranker set")
    parser.add_argument("--min-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flag-batch-sizes", default="8,32,128,256")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.pairs, args.per_query, args.max_tokens, args.repeats = 16, 16, 4, 128, 1
        args.flag_batch_sizes = "8,256"
    args.flag_batch_sizes = [int(b) for b in str(args.flag_batch_sizes).split(",")]
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    preset = "tiny" if args.quick else "wide"
    work = Path(tempfile.mkdtemp(prefix="m3rag-family-"))
    dense = args.dense or build_bert_checkpoint(work / f"{preset}-bert", preset=preset)
    reranker = args.reranker or build_reranker_checkpoint(work / f"{preset}-reranker", preset=preset)
    print(f"# BGE family benchmark{' (--quick: smoke run, numbers meaningless)' if args.quick else ''}\n\nCPU: {cpu_description()}")
    dense_section(Path(dense), args)
    reranker_section(Path(reranker), args)


if __name__ == "__main__":
    main()
