"""Disk and memory per 1,000 passages of a bge-m3-sized index, per storage setting, and the peak
memory of `m3rag index` as the input grows (it must stay flat).

    python benchmarks/footprint.py [--passages 1000] [--tokens 256] [--quick]

Part 1 encodes passages of ~--tokens tokens once with the "wide" test checkpoint (bge-m3's widths:
1024-d dense and ColBERT vectors; its vocabulary is small, which only shrinks the sparse part's
fixed cost), then stores the same vectors (M3Index.add_encoded) under each setting and reports the
saved index's bytes and the resident memory the stored vectors take. Part 2 runs `m3rag index` in
fresh processes on one text file of growing size (tiny checkpoint) and reports each run's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_cpu
from _texts import mixed_length_texts

from m3rag import M3Encoder, M3Index
from m3rag.testing import SAMPLE_TEXTS, build_checkpoint

SETTINGS = {
    "ColBERT float16 (default)": dict(store_colbert=True, colbert_dtype="float16"),
    "ColBERT float32": dict(store_colbert=True, colbert_dtype="float32"),
    "ColBERT bfloat16": dict(store_colbert=True, colbert_dtype="bfloat16"),
    "ColBERT int8": dict(store_colbert=True, colbert_dtype="int8"),
    "no ColBERT (--no-colbert)": dict(store_colbert=False),
    "no ColBERT, HNSW dense": dict(store_colbert=False, dense_index="hnsw"),
}


def per_setting(checkpoint: Path, passages: int, tokens: int, work: Path) -> None:
    encoder = M3Encoder(checkpoint, device="cpu", dtype="bfloat16")  # sizes do not depend on the compute dtype
    texts = mixed_length_texts(encoder.tokenizer, passages, tokens - 8, tokens)
    out = encoder.encode(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    mean_tokens = float(out.num_tokens.mean())
    widths = "(bge-m3's widths), " if encoder.dim == 1024 else ""
    print(
        f"\n{passages} passages of {mean_tokens:.0f} tokens on average, {encoder.dim}-d dense, {encoder.colbert_dim}-d ColBERT "
        f"{widths}{out.sparse.nnz / passages:.0f} lexical weights per passage\n"
    )
    print("| setting | disk per 1,000 passages | memory per 1,000 passages: dense / sparse / ColBERT / texts |")
    print("|---|---:|---:|")
    query = texts[:1]
    for name, options in SETTINGS.items():
        index = M3Index(encoder, **options)  # type: ignore[arg-type]
        index.add_encoded(out, texts)
        index.search(query[0], k=1, mode="hybrid")  # builds the inverted index (CSC), part of the memory a searchable index holds
        held = index.store.nbytes()  # type: ignore[attr-defined]
        path = work / name.split()[0].lower()
        index.save(path)
        disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        scale = 1000 / passages / 2**20
        parts = " / ".join(f"{held[k] * scale:.1f}" for k in ("dense", "sparse", "colbert", "docs"))
        print(
            f"| {name} | {disk * scale:.1f} MB | {sum(held[k] for k in ('dense', 'sparse', 'colbert', 'docs')) * scale:.1f} MB ({parts}) |"
        )
    colbert_kb = (mean_tokens - 1) * encoder.colbert_dim / 1024  # type: ignore[operator]
    print(
        f"\nBy formula per passage: dense {encoder.dim * 4 / 1024:.0f} KB; ColBERT (tokens - 1) x {encoder.colbert_dim} x 2 B = "
        f"{colbert_kb * 2:.0f} KB in float16, {colbert_kb * 4:.0f} KB in float32 (after a save, ColBERT segments are memory-mapped: "
        "they occupy page cache, not process memory)."
    )


CHILD = """
import sys
from m3rag.cli import main
code = main(sys.argv[1:])
print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")), file=sys.stderr)
sys.exit(code)
"""


def cli_peak(checkpoint: Path, sizes_mb: list[float], work: Path) -> None:
    print("\n`m3rag index FILE` on one text file (tiny checkpoint, --batch 256), peak resident memory of the process:\n")
    print("| file | passages | peak RSS |")
    print("|---:|---:|---:|")
    words = " ".join(SAMPLE_TEXTS).split()
    rng = np.random.default_rng(0)
    for size in sizes_mb:
        corpus = work / f"corpus-{size}"
        corpus.mkdir()
        text, target = [], int(size * 2**20)
        length = 0
        while length < target:
            paragraph = " ".join(rng.choice(words, 120)) + ".\n\n"
            text.append(paragraph)
            length += len(paragraph.encode())
        (corpus / "big.txt").write_text("".join(text), encoding="utf-8")
        env = {**os.environ, "M3RAG_MODEL": str(checkpoint)}
        run = subprocess.run(
            [sys.executable, "-c", CHILD, "index", str(corpus), "--index", str(work / f"idx-{size}")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        peak_mb = int(run.stderr.strip().splitlines()[-1]) / 1024
        passages = json.loads(next((work / f"idx-{size}").glob("snap-*/manifest.json")).read_text())["count"]
        print(f"| {size:g} MB | {passages:,} | {peak_mb:,.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="a small setting that runs in seconds (CI checks the script runs)")
    args = parser.parse_args()
    print(f"CPU: {describe_cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.quick:
            tiny = build_checkpoint(work / "tiny", preset="tiny")
            per_setting(tiny, 40, 64, work)
            cli_peak(tiny, [0.05, 0.1], work)
            return
        wide = build_checkpoint(work / "wide", preset="wide")
        per_setting(wide, args.passages, args.tokens, work)
        cli_peak(build_checkpoint(work / "tiny", preset="tiny"), [0.5, 5.0], work)


if __name__ == "__main__":
    main()
