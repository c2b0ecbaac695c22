"""Stores side by side: the local store, Qdrant embedded and milvus-lite, same vectors, same run.

    python benchmarks/stores.py [--docs 10000] [--queries 10] [--threads 1] [--stores local,qdrant,milvus] [--quick]

The model is the tiny test checkpoint (``m3rag.testing.build_checkpoint``: 64-d dense and ColBERT
vectors, a 1,502-token vocabulary). Document and query vectors are synthetic, of its shapes:
unit dense vectors around 100 topics, 10-40 lexical weights per document drawn from a Zipf
distribution (8-12 per query, some shared with a document), 16-96 ColBERT rows per document and
8-24 per query; texts are cut from ``m3rag.testing.SAMPLE_TEXTS``. Each store runs in a fresh
child process:

1. add: ``M3Index.add_encoded`` of all documents in calls of 1,000 (no encoding): docs/s.
2. search latency per plan (k=10, ``--candidates`` 100; median over the queries, after a warm-up):
   ``store.search`` with the queries already encoded, i.e. the store's own work (query encoding
   is the same for every store and left out). Milvus reranks re-encode the 100 candidates' texts
   with the tiny model (it keeps no ColBERT vectors): that encoder pass is part of its time.
3. requests per search: calls to the engine's client during one search (the local store: none).
4. memory: resident-set growth of the child from before the store was created to after the
   add (the store's footprint), and its peak above that baseline (VmHWM).

Ratios are against the local store of the same run (latency: store / local, higher is slower;
add: store / local docs/s). ``--quick`` (200 documents, 2 queries, 20 candidates, all stores in this
process, so memory figures are rough) runs in seconds once torch is imported, for the tests. ``--threads 1`` (default) gives every
child one thread of each pool (torch, OpenMP, BLAS), so the stores get the same single core;
``0`` keeps the defaults. Absolute times on a shared machine are noise; compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

PLANS: dict[str, dict[str, Any]] = {
    "dense": dict(mode="dense"),
    "sparse": dict(mode="sparse"),
    "hybrid": dict(mode="hybrid"),
    "hybrid rrf": dict(mode="hybrid", fusion="rrf"),
    "hybrid + filter": dict(mode="hybrid", filter={"lang": "en"}),
    "hybrid + colbert": dict(mode="hybrid", rerank="colbert"),
    "hybrid + hybrid rerank": dict(mode="hybrid", rerank="hybrid"),
}
LANGS = ["en", "fr", "de", "es", "zh"]
BATCH = 1_000


def cpu() -> str:
    """The CPU model and its vector extensions (AVX2, AVX-512, AMX), from /proc/cpuinfo."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f == "avx2" or f.startswith(("avx512", "amx")))
    return f"{model}, {os.cpu_count()} logical cores; flags: {' '.join(wanted) or 'no AVX2/AVX-512/AMX'}"


def _status(key: str) -> float:
    """A /proc/self/status memory figure, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- parent: data
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _sparse_rows(rng: np.random.Generator, counts: np.ndarray, vocab: int) -> sp.csr_array:
    """Rows of ``counts`` distinct Zipf-drawn token ids (4..vocab-2) with weights 0.01-0.4."""
    rows = []
    for count in counts.tolist():
        tokens: set[int] = set()
        while len(tokens) < count:
            tokens.add(4 + int(rng.zipf(1.3) - 1) % (vocab - 6))
        rows.append(sorted(tokens))
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.concatenate(rows).astype(np.int32)
    data = rng.uniform(0.01, 0.4, len(indices)).astype(np.float32)
    return sp.csr_array((data, indices, indptr), shape=(len(rows), vocab))


def prepare(directory: Path, docs: int, queries: int, seed: int = 0) -> None:
    """The tiny checkpoint, synthetic vectors of its shapes and texts, in ``directory``."""
    from m3rag.testing import SAMPLE_TEXTS, build_checkpoint

    build_checkpoint(directory / "tiny-m3", preset="tiny", seed=0)
    dim, vocab = 64, 1502
    rng = np.random.default_rng(seed)
    topics = _unit(rng.standard_normal((100, dim)))
    dense = _unit(topics[rng.integers(0, 100, docs)] + 0.7 * rng.standard_normal((docs, dim)) / np.sqrt(dim) * 4)
    sparse = _sparse_rows(rng, rng.integers(10, 41, docs), vocab)
    rows = rng.integers(16, 97, docs)
    offsets = np.concatenate([[0], np.cumsum(rows)])
    colbert = _unit(rng.standard_normal((int(offsets[-1]), dim)))
    near = rng.integers(0, docs, queries)
    q_dense = _unit(dense[near] + 0.5 * rng.standard_normal((queries, dim)) / np.sqrt(dim) * 4)
    q_sparse = _sparse_rows(rng, rng.integers(5, 9, queries), vocab)
    q_sparse = sp.csr_array(q_sparse + sparse[near] * (rng.uniform(0, 1, (queries, 1)) < 0.8), dtype=np.float32)
    q_rows = rng.integers(8, 25, queries)
    q_offsets = np.concatenate([[0], np.cumsum(q_rows)])
    q_colbert = _unit(rng.standard_normal((int(q_offsets[-1]), dim)))
    arrays: dict[str, np.ndarray] = {}
    for prefix, d, s, c, o in (("d", dense, sparse, colbert, offsets), ("q", q_dense, q_sparse, q_colbert, q_offsets)):
        s.sort_indices()
        arrays.update({f"{prefix}_dense": d, f"{prefix}_colbert": c, f"{prefix}_offsets": o, f"{prefix}_tokens": np.diff(o) + 1})
        arrays.update({f"{prefix}_indptr": s.indptr, f"{prefix}_indices": s.indices, f"{prefix}_data": s.data.astype(np.float32)})
    np.savez(directory / "vectors.npz", **arrays)
    words = " ".join(SAMPLE_TEXTS).split()
    starts = rng.integers(0, len(words) - 100, docs)
    texts = [" ".join(words[a : a + n]) for a, n in zip(starts.tolist(), (rows * 2 // 3).tolist())]
    metas = [{"lang": LANGS[i % len(LANGS)], "n": i} for i in range(docs)]
    (directory / "docs.json").write_text(json.dumps({"texts": texts, "metadatas": metas, "vocab": vocab}))


def _output(arrays: Any, prefix: str, vocab: int) -> Any:
    from m3rag import M3Output

    n = len(arrays[f"{prefix}_tokens"])
    sparse = sp.csr_array((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=(n, vocab))
    return M3Output(
        arrays[f"{prefix}_dense"],
        sparse,
        arrays[f"{prefix}_colbert"],
        arrays[f"{prefix}_offsets"],
        arrays[f"{prefix}_tokens"],
        np.zeros(n, dtype=bool),
    )


# --------------------------------------------------------------------------- child: one store
def _open(kind: str, directory: Path) -> Any:
    if kind == "local":
        from m3rag.stores import LocalStore

        return LocalStore()
    if kind == "qdrant":
        from m3rag.stores import QdrantStore

        return QdrantStore(location=":memory:", collection="bench", batch_size=256)
    from m3rag.stores import MilvusStore

    return MilvusStore(str(directory / "milvus-bench.db"), "bench", batch_size=1_000)


def run_child(kind: str, directory: Path, repeats: int, candidates: int) -> dict[str, Any]:
    """Build store ``kind`` from the prepared vectors and time it; returns the measurements."""
    import warnings

    from m3rag import M3Encoder, M3Index
    from m3rag.index.plan import SearchPlan

    warnings.filterwarnings("ignore")
    info = json.loads((directory / "docs.json").read_text())
    arrays = np.load(directory / "vectors.npz")
    docs, q = _output(arrays, "d", info["vocab"]), _output(arrays, "q", info["vocab"])
    texts, metas = info["texts"], info["metadatas"]
    ids = [f"doc-{i}" for i in range(len(texts))]
    encoder = M3Encoder(directory / "tiny-m3", device="cpu", dtype="float32")
    encoder.encode_corpus(texts[:8], return_colbert_vecs=True)  # load and warm the model before the baseline
    baseline = _status("VmRSS")

    store = _open(kind, directory)
    index = M3Index(encoder, store=store)
    start = time.perf_counter()
    for s in range(0, len(texts), BATCH):
        index.add_encoded(docs.slice(s, min(s + BATCH, len(texts))), texts[s : s + BATCH], ids[s : s + BATCH], metas[s : s + BATCH])
    add_seconds = time.perf_counter() - start
    grown = _status("VmRSS") - baseline

    result: dict[str, Any] = {"add_docs_per_s": len(texts) / add_seconds, "latency_ms": {}, "requests": {}}
    for name, options in PLANS.items():
        plan = SearchPlan.build(10, candidates=candidates, **options)
        store.search(plan, q.slice(0, 1), index._encode_colbert)  # warm-up
        times = []
        for _ in range(repeats):
            for i in range(len(q)):
                one = q.slice(i, i + 1)
                begin = time.perf_counter()
                store.search(plan, one, index._encode_colbert)
                times.append(time.perf_counter() - begin)
        result["latency_ms"][name] = 1e3 * statistics.median(times)
        result["requests"][name] = _requests(store, plan, q.slice(0, 1), index)
    result["memory_mib"] = grown
    result["peak_mib"] = _status("VmHWM") - baseline
    index.close()
    return result


def _requests(store: Any, plan: Any, q: Any, index: Any) -> str:
    """Client calls of one search: ``"0"`` in process, else their count (and the encoder pass
    of a store that recomputes ColBERT vectors)."""
    if store.kind == "local":
        return "0"
    calls: list[str] = []
    client = store.client

    class Counting:
        def __getattr__(self, name: str) -> Any:
            value = getattr(client, name)
            if name.startswith("_") or not callable(value):
                return value
            return lambda *a, **k: (calls.append(name), value(*a, **k))[1]

    store.client = Counting()
    try:
        store.search(plan, q, index._encode_colbert)
    finally:
        store.client = client
    extra = " + encoder" if plan.rerank and not store.keeps_colbert else ""
    return f"{len(calls)}{extra}"


# --------------------------------------------------------------------------- parent: table
def table(results: dict[str, dict[str, Any]], docs: int) -> str:
    kinds = list(results)
    local = results.get("local")
    label = {"local": "local", "qdrant": "Qdrant embedded", "milvus": "milvus-lite"}
    lines = [f"| {docs:,} documents | " + " | ".join(label[k] for k in kinds) + " |", "|---" * (len(kinds) + 1) + "|"]

    def cell(kind: str, value: float, ref: float | None, unit: str, digits: int = 1) -> str:
        text = f"{value:,.{digits}f}{unit}"
        if kind == "local" or ref is None:
            return text
        ratio = value / ref
        return f"{text} ({ratio:,.0f}x)" if ratio >= 10 else f"{text} ({ratio:.2f}x)"

    adds = [cell(k, results[k]["add_docs_per_s"], local and local["add_docs_per_s"], "", 0) for k in kinds]
    lines.append("| add (docs/s) | " + " | ".join(adds) + " |")
    for name in PLANS:
        row = [cell(k, results[k]["latency_ms"][name], local and local["latency_ms"][name], " ms") for k in kinds]
        lines.append(f"| {name} (latency) | " + " | ".join(row) + " |")
    for name in ("dense", "hybrid", "hybrid + hybrid rerank"):
        lines.append(f"| requests / search, {name} | " + " | ".join(results[k]["requests"][name] for k in kinds) + " |")
    lines.append("| memory after add (MiB) | " + " | ".join(f"{results[k]['memory_mib']:,.0f}" for k in kinds) + " |")
    lines.append("| peak memory (MiB) | " + " | ".join(f"{results[k]['peak_mib']:,.0f}" for k in kinds) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="threads per pool in each child (0: the libraries' defaults)")
    parser.add_argument("--stores", default="local,qdrant,milvus")
    parser.add_argument("--quick", action="store_true", help="300 documents, 3 queries: a few seconds")
    parser.add_argument("--child", choices=["local", "qdrant", "milvus"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.data, args.repeats, args.candidates)))
        return
    if args.quick:
        args.docs, args.queries, args.repeats, args.candidates = 200, 2, 1, 20
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    env = dict(os.environ)
    if args.threads:
        env.update({v: str(args.threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    with tempfile.TemporaryDirectory(prefix="m3rag-stores-bench-") as tmp:
        directory = Path(tmp)
        start = time.perf_counter()
        prepare(directory, args.docs, args.queries)
        print(f"{args.docs:,} documents and {args.queries} queries prepared in {time.perf_counter() - start:.1f} s", flush=True)
        results: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            start = time.perf_counter()
            if args.quick:
                results[kind] = run_child(kind, directory, args.repeats, args.candidates)
            else:
                child = [sys.executable, __file__, "--child", kind, "--data", str(directory), "--repeats", str(args.repeats)]
                child += ["--candidates", str(args.candidates)]
                done = subprocess.run(child, check=True, capture_output=True, text=True, env=env)
                results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {kind}: {time.perf_counter() - start:.1f} s", flush=True)
    print(f"\nCPU: {cpu()}; threads per pool: {args.threads or 'library defaults'}")
    print(f"k=10, {args.candidates} candidates, {args.queries} queries x {args.repeats}; latency = median per query (store work only)\n")
    print(table(results, args.docs))


if __name__ == "__main__":
    main()
