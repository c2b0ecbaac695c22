"""Index primitives: m3rag's stores vs the way integrations do it today, same data, same run.

    python benchmarks/retrieval.py [--docs 100000] [--queries 20] [--repeats 3] [--seed 0]

What is compared (every ratio is peer time / m3rag time, medians of --repeats interleaved runs):

1. Sparse search over --docs documents: ``SparseStore.scores`` (CSC inverted index) +
   ``scoring.top_k`` per query, vs FlagEmbedding's own
   ``M3Embedder.compute_lexical_matching_score(query_dict, doc_dicts)``, a Python loop over one
   ``{str(token_id): weight}`` dict per document, then a numpy top-10. The top-10 ids must match.
2. ColBERT reranking of 100 candidates of ~256 tokens for a 32-token query:
   ``ColbertStore.gather`` (float16 and float32 stores) + ``scoring.colbert_scores_flat`` vs a
   loop of FlagEmbedding's ``M3Embedder.colbert_score(q, p)`` over the candidates' float32 arrays.
   Scores must match (float32 store: 1e-5).
3. Dense search over --docs documents: ``DenseStore`` flat (faiss ``IndexFlatIP``), one query per
   call and --queries per call, and HNSW, vs numpy ``D @ q`` + ``argpartition``; HNSW recall@10.
4. Index memory per document, from the arrays' ``nbytes`` (ColBERT: fp16 at 256 tokens/document).
5. Insert time per 1k documents of each store (vectors given: encoding excluded), and real
   end-to-end ``M3Index.add`` of ~200-token texts on the "tiny" and "wide" test checkpoints,
   next to ``encode_corpus`` of the same texts (encoding dominates).

The vectors are synthetic, shaped like BGE-M3's (no model needed for 1-4): dense 1024-d
L2-normalised, clustered around 1,000 topics plus a shared direction (mean cosine of unrelated
documents ~0.4, as BGE-M3's are anisotropic); queries are noisy copies of random documents. Sparse:
vocabulary 250,002, 40-80 distinct token ids per document and 8-12 per query drawn from a Zipf
distribution (exponent 1), weights uniform in 0.01-0.4. ColBERT: 1024-d unit vectors.

FlagEmbedding's methods used here do not touch ``self``, so they are called unbound with
``None``: no model is loaded for them. Needs the 'test' extra (FlagEmbedding). Absolute times on a
shared machine are noise; the ratios are the result. About 3 minutes at the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _texts import mixed_length_texts  # noqa: E402
from FlagEmbedding.inference.embedder.encoder_only.m3 import M3Embedder  # noqa: E402

from m3rag import M3Encoder, M3Index, scoring  # noqa: E402
from m3rag.index.colbert import ColbertStore  # noqa: E402
from m3rag.index.dense import DenseStore  # noqa: E402
from m3rag.index.sparse import SparseStore  # noqa: E402
from m3rag.testing import build_checkpoint  # noqa: E402

DIM = 1024
VOCAB = 250_002
FIRST_TOKEN, LAST_TOKEN = 4, 250_000  # ids 0-3 are <s> <pad> </s> <unk>, 250001 is <mask>
K = 10
CHUNK = 1_000  # documents per add() call when building the stores
COLBERT_TOKENS = 256


# ---------------------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, float], dict[str, Any]]:
    """One warm-up call each (its result is returned for checks), then ``repeats`` rounds calling
    every contender once, in alternating order. Returns median seconds per call and the results."""
    results = {name: fn() for name, fn in contenders.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            times[name].append(timed(contenders[name])[0])
    return {name: statistics.median(t) for name, t in times.items()}, results


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


@dataclass
class Summary:
    """Headline ratios and the facts sections 4 and 5 collect."""

    ratios: list[list[str]] = field(default_factory=list)
    memory: list[list[str]] = field(default_factory=list)
    build: list[list[str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------- synthetic data
def zipf_weights(rng: np.random.Generator, n: int, low: int, high: int) -> sp.csr_array:
    """``n`` rows of ``low..high`` distinct Zipf-drawn token ids, weights uniform in 0.01-0.4."""
    ranks = np.arange(1, LAST_TOKEN - FIRST_TOKEN + 2, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks)
    cdf /= cdf[-1]
    wanted = rng.integers(low, high + 1, size=n)
    draws = 2 * high
    rows, cols = [], []
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        tokens = np.searchsorted(cdf, rng.random((m, draws)), side="right") + FIRST_TOKEN
        tokens.sort(axis=1)
        first = np.ones(tokens.shape, dtype=bool)
        first[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
        # the distinct ids of each row in random order, then the first `wanted` of them
        order = np.argsort(np.where(first, rng.random(tokens.shape), np.inf), axis=1)
        tokens = np.take_along_axis(tokens, order, axis=1)
        take = np.arange(draws)[None, :] < np.minimum(wanted[start : start + m], first.sum(axis=1))[:, None]
        rows.append(np.nonzero(take)[0] + start)
        cols.append(tokens[take])
    row, col = np.concatenate(rows), np.concatenate(cols)
    data = rng.uniform(0.01, 0.4, size=len(row)).astype(np.float32)
    matrix = sp.csr_array((data, (row, col)), shape=(n, VOCAB), dtype=np.float32)
    matrix.sort_indices()
    return matrix


_KEYS = [str(i) for i in range(VOCAB)]


def flag_dicts(matrix: sp.csr_array, python_floats: bool) -> list[dict[str, Any]]:
    """FlagEmbedding's lexical weights: ``{str(token_id): weight}`` per row. As FlagEmbedding emits
    them (``defaultdict``, ``np.float32`` values) or with plain Python ``float`` values."""
    out: list[dict[str, Any]] = []
    for i in range(matrix.shape[0]):
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        keys = [_KEYS[t] for t in matrix.indices[lo:hi].tolist()]
        if python_floats:
            out.append(dict(zip(keys, matrix.data[lo:hi].tolist())))
        else:
            out.append(defaultdict(int, zip(keys, matrix.data[lo:hi])))
    return out


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def dense_corpus(rng: np.random.Generator, n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Documents ``sqrt(.4) shared + sqrt(.25) topic + sqrt(.35) noise`` (normalised; 1,000 topics)
    and queries = random documents plus noise (cosine ~0.8 to their source)."""
    shared = unit_rows(rng, 1)
    topics = unit_rows(rng, 1_000)
    docs = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        block = np.sqrt(0.35) * unit_rows(rng, m)
        block += np.sqrt(0.25) * topics[rng.integers(0, len(topics), m)] + np.sqrt(0.4) * shared
        docs[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = docs[rng.integers(0, n, n_queries)] + np.sqrt(0.6) * unit_rows(rng, n_queries)
    return docs, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def numpy_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The usual numpy top-k: ``argpartition``, then sort those ``k`` by score."""
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# ------------------------------------------------------------------------------ 1. sparse search
def bench_sparse(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    docs = zipf_weights(rng, args.docs, 40, 80)
    queries = zipf_weights(rng, args.queries, 8, 12)
    query_rows = [queries[[i]] for i in range(args.queries)]  # what encode_queries gives for one query

    store = SparseStore(VOCAB)
    add_s, _ = timed(lambda: [store.add(docs[i : i + CHUNK]) for i in range(0, args.docs, CHUNK)])
    finish_s, _ = timed(lambda: store.scores(sp.csr_array((1, VOCAB), dtype=np.float32)))  # joins CSR, builds CSC
    csr, csc = store.matrix, store._csc
    assert csc is not None
    nnz = csr.nnz / args.docs
    summary.build.append(["sparse (`SparseStore`: add, then CSR join + CSC build on first search)",
                          f"{ms((add_s + finish_s) * CHUNK / args.docs)}",
                          f"add {ms(add_s * CHUNK / args.docs)} + first-search build {ms(finish_s * CHUNK / args.docs)}"])
    summary.memory.append(["sparse CSR (`SparseStore.matrix`)", f"{csr_bytes(csr) / args.docs:,.0f}", f"{nnz:.1f} tokens/doc: float32 weight + int32 id, + int32/int64 indptr"])
    summary.memory.append(["sparse CSC (inverted index, built on first search)", f"{csr_bytes(csc) / args.docs:,.0f}", "same entries, by token"])
    summary.memory.append(["sparse as FlagEmbedding dicts (peer, `str` keys, `np.float32` values)", f"{dict_bytes_per_doc(docs):,.0f}", "tracemalloc over 1,000 documents"])

    emitted, floats = flag_dicts(docs, python_floats=False), flag_dicts(docs, python_floats=True)
    q_emitted, q_floats = flag_dicts(queries, python_floats=False), flag_dicts(queries, python_floats=True)

    def peer(q_dicts: list[dict[str, Any]], doc_dicts: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for q in q_dicts:
            s = np.asarray(M3Embedder.compute_lexical_matching_score(None, [q], doc_dicts)[0], dtype=np.float64)
            out.append((numpy_top_k(s, K), s))
        return out

    def ours_one() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for q in query_rows:
            s = store.scores(q)[:, 0]
            out.append((scoring.top_k(s, K), s))
        return out

    def ours_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        s = store.scores(queries)
        return [(scoring.top_k(s[:, i], K), s[:, i]) for i in range(args.queries)]

    contenders = {
        "FlagEmbedding `compute_lexical_matching_score`, dicts as it emits them (`np.float32` values)": lambda: peer(q_emitted, emitted),
        "same loop, dicts with Python `float` values (the peer at its best)": lambda: peer(q_floats, floats),
        "m3rag `SparseStore.scores` + `scoring.top_k`, one query per call": ours_one,
        f"m3rag, all {args.queries} queries in one `scores` call": ours_batch,
    }
    times, results = interleaved(contenders, args.repeats)
    names = list(contenders)
    for name in names[:2] + names[3:]:
        for (top, s), (ref_top, ref_s) in zip(results[name], results[names[2]]):
            assert np.array_equal(top, ref_top), f"top-{K} differs: {name}"
            assert np.abs(s - ref_s).max() < 1e-5, f"scores differ: {name}"

    per_query = {name: t / args.queries for name, t in times.items()}
    # a search right after an add(): the CSR is re-joined and the CSC rebuilt from scratch
    after_add = []
    for i in range(args.repeats):
        store.add(docs[[i]])
        after_add.append(timed(lambda: store.scores(query_rows[0]))[0])
    per_query[f"m3rag, first query after `add()` of 1 document to the {args.docs:,}"] = statistics.median(after_add)
    best_peer = per_query[names[1]]
    table(f"1. Sparse search: {args.docs:,} documents ({nnz:.1f} tokens each), {args.queries} queries, top-{K}",
          ["run", "ms per query", "speed-up vs the peer at its best"],
          [[name, ms(t), f"{best_peer / t:,.1f}x"] for name, t in per_query.items()])
    print(f"\nTop-{K} ids identical for all {args.queries} queries (m3rag vs both peers); scores within 1e-5.")
    summary.ratios.append(["sparse search per query, 100 k docs (vs FlagEmbedding dict loop at its best)",
                           ms(per_query[names[2]]), ms(best_peer), f"{best_peer / per_query[names[2]]:,.0f}x", ">= 50x"])


def csr_bytes(m: sp.csr_array | sp.csc_array) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def dict_bytes_per_doc(matrix: sp.csr_array, n: int = 1_000) -> float:
    """Memory of FlagEmbedding's lexical weights as it builds them: a fresh ``str`` key and an
    ``np.float32`` value per token, in a ``defaultdict``."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = []
    for i in range(n):
        lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
        d: defaultdict[str, Any] = defaultdict(int)
        for t, w in zip(matrix.indices[lo:hi].tolist(), matrix.data[lo:hi]):
            d[str(t)] = w
        held.append(d)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


# ---------------------------------------------------------------------------- 2. ColBERT rerank
def bench_colbert(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    lengths = rng.integers(COLBERT_TOKENS - 64, COLBERT_TOKENS + 65, size=args.colbert_docs)
    offsets = np.zeros(args.colbert_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = unit_rows(rng, int(offsets[-1]))
    per_doc = [flat[offsets[i] : offsets[i + 1]] for i in range(args.colbert_docs)]  # the peer's float32 arrays

    stores: dict[str, ColbertStore] = {}
    build_s: dict[str, float] = {}
    for dtype in (np.float16, np.float32):
        store = ColbertStore(DIM, dtype)

        def build(store: ColbertStore = store) -> None:
            for lo in range(0, args.colbert_docs, 100):
                hi = min(lo + 100, args.colbert_docs)
                store.add(flat[offsets[lo] : offsets[hi]], offsets[lo : hi + 1] - offsets[lo])
            store.arrays  # noqa: B018 (joins the chunks)

        build_s[np.dtype(dtype).name], _ = timed(build)
        stores[np.dtype(dtype).name] = store
    per_1k = {name: s * 1000 / args.colbert_docs for name, s in build_s.items()}
    summary.build.append([f"ColBERT (`ColbertStore` fp16: add + join; {lengths.mean():.0f} tokens/doc)", ms(per_1k["float16"]),
                          f"fp32 store: {ms(per_1k['float32'])}"])
    vectors16, offsets16 = stores["float16"].arrays
    bytes_per_token = vectors16.nbytes / len(vectors16)
    summary.memory.append([f"ColBERT fp16 (`ColbertStore`, {COLBERT_TOKENS} tokens/doc)", f"{bytes_per_token * COLBERT_TOKENS + offsets16.itemsize:,.0f}",
                           f"{bytes_per_token:.0f} B/token + one int64 offset"])
    owned = np.zeros((COLBERT_TOKENS, DIM), dtype=np.float32)
    summary.memory.append([f"ColBERT as float32 arrays (peer, {COLBERT_TOKENS} tokens/doc)", f"{sys.getsizeof(owned):,.0f}", "one ndarray per document"])

    work = [(unit_rows(rng, 32), rng.choice(args.colbert_docs, size=args.candidates, replace=False)) for _ in range(args.queries)]

    def ours(store: ColbertStore) -> list[np.ndarray]:
        out = []
        for q, rows in work:
            vectors, offs = store.gather(rows)
            out.append(scoring.colbert_scores_flat(q, vectors, offs))
        return out

    gathered = [stores["float32"].gather(rows) for _, rows in work]

    def flat_only() -> list[np.ndarray]:
        return [scoring.colbert_scores_flat(q, v, o) for (q, _), (v, o) in zip(work, gathered)]

    def peer() -> list[np.ndarray]:
        return [np.array([float(M3Embedder.colbert_score(None, q, per_doc[r])) for r in rows.tolist()]) for q, rows in work]

    contenders = {
        "FlagEmbedding `colbert_score`, one call per candidate (float32 arrays)": peer,
        "m3rag `ColbertStore.gather` (fp16 store) + `colbert_scores_flat`": lambda: ours(stores["float16"]),
        "m3rag `ColbertStore.gather` (fp32 store) + `colbert_scores_flat`": lambda: ours(stores["float32"]),
        "m3rag `colbert_scores_flat` alone (candidates already gathered, fp32)": flat_only,
        "m3rag `ColbertStore.gather` alone (fp16 store, returns float32)": lambda: [stores["float16"].gather(rows) for _, rows in work],
    }
    times, results = interleaved(contenders, args.repeats)
    names = list(contenders)
    diff = {name: max(float(np.abs(a - b).max()) for a, b in zip(results[name], results[names[0]])) for name in names[1:4]}
    assert diff[names[2]] < 1e-5 and diff[names[3]] < 1e-5, diff
    assert diff[names[1]] < 1e-2, diff
    base = times[names[0]]
    table(f"2. ColBERT rerank: {args.candidates} candidates of {COLBERT_TOKENS - 64}-{COLBERT_TOKENS + 64} tokens, 32-token query "
          f"(from {args.colbert_docs} stored documents, {args.queries} queries)",
          ["run", "ms per query", "speed-up vs FlagEmbedding", "max abs score difference vs FlagEmbedding"],
          [[name, ms(t / args.queries), f"{base / t:.2f}x", f"{diff[name]:.1e}" if name in diff else "-"] for name, t in times.items()])
    for name, label in ((names[1], "fp16 store"), (names[2], "fp32 store")):
        summary.ratios.append([f"ColBERT rerank of {args.candidates} x ~{COLBERT_TOKENS} tokens, {label} (vs per-pair `colbert_score`)",
                               ms(times[name] / args.queries), ms(base / args.queries), f"{base / times[name]:.2f}x", ">= 10x"])


# ------------------------------------------------------------------------------- 3. dense search
def bench_dense(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    docs, queries = dense_corpus(rng, args.docs, args.queries)
    flat, hnsw = DenseStore(DIM, "flat"), DenseStore(DIM, "hnsw")
    for name, store in (("flat", flat), ("hnsw", hnsw)):
        seconds, _ = timed(lambda store=store: [store.add(docs[i : i + CHUNK]) for i in range(0, args.docs, CHUNK)])
        label = "dense flat (`DenseStore`, faiss `IndexFlatIP`)" if name == "flat" else "dense HNSW (`DenseStore`, M=32, efConstruction=200)"
        summary.build.append([label, ms(seconds * CHUNK / args.docs), f"{args.docs:,} documents in {args.docs // CHUNK} add() calls"])
    graph = hnsw.index.hnsw
    graph_bytes = graph.neighbors.size() * 4 + graph.offsets.size() * 8 + graph.levels.size() * 4
    summary.memory.append(["dense flat (float32)", f"{flat.index.ntotal * DIM * 4 / args.docs:,.0f}", f"{DIM} x float32"])
    summary.memory.append(["dense HNSW (float32 + graph)", f"{(hnsw.index.ntotal * DIM * 4 + graph_bytes) / args.docs:,.0f}", f"graph {graph_bytes / args.docs:,.0f} B/doc"])
    cosine = float((docs[:2000] @ docs[2000:4000].T).mean())

    def numpy_one() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for q in queries:
            s = docs @ q
            top = numpy_top_k(s, K)
            out.append((s[top], top))
        return out

    def numpy_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        s = queries @ docs.T
        return [(row[top], top) for row in s for top in [numpy_top_k(row, K)]]

    def store_one(store: DenseStore) -> list[tuple[np.ndarray, np.ndarray]]:
        return [tuple(a[0] for a in store.search(q[None], K, None)) for q in queries]  # type: ignore[misc]

    def store_batch(store: DenseStore) -> list[tuple[np.ndarray, np.ndarray]]:
        scores, rows = store.search(queries, K, None)
        return list(zip(scores, rows))

    contenders = {
        "numpy `D @ q` + `argpartition`, one query per call": numpy_one,
        f"numpy `Q @ D.T`, {args.queries} queries per call": numpy_batch,
        "m3rag `DenseStore` flat, one query per call": lambda: store_one(flat),
        f"m3rag `DenseStore` flat, {args.queries} queries per call": lambda: store_batch(flat),
        "m3rag `DenseStore` HNSW (efSearch 128), one query per call": lambda: store_one(hnsw),
        f"m3rag `DenseStore` HNSW, {args.queries} queries per call": lambda: store_batch(hnsw),
    }
    times, results = interleaved(contenders, args.repeats)
    names = list(contenders)
    exact = results[names[0]]
    for name in names[1:4]:  # exact searches: the same top-k scores (ids may swap only within ties)
        for (s, _), (ref, _) in zip(results[name], exact):
            assert np.abs(np.sort(s) - np.sort(ref)).max() < 1e-5, name
    recall = {name: float(np.mean([len(set(r.tolist()) & set(ref.tolist())) / K for (_, r), (_, ref) in zip(results[name], results[names[2]])]))
              for name in names[4:]}
    base = times[names[0]]
    table(f"3. Dense search: {args.docs:,} x {DIM} float32 documents (mean cosine of unrelated ones {cosine:.2f}), {args.queries} queries, top-{K}",
          ["run", "ms per query", "speed-up vs numpy one query per call", f"recall@{K} vs flat"],
          [[name, ms(t / args.queries), f"{base / t:,.1f}x", f"{recall[name]:.3f}" if name in recall else "exact"] for name, t in times.items()])
    for name, label in ((names[2], "flat, 1 query/call"), (names[3], f"flat, {args.queries} queries/call"), (names[4], "HNSW, 1 query/call")):
        extra = f" (recall@{K} {recall[name]:.3f})" if name in recall else ""
        summary.ratios.append([f"dense search per query, {label}{extra} (vs numpy `D @ q`)", ms(times[name] / args.queries),
                               ms(base / args.queries), f"{base / times[name]:,.1f}x", "-"])


# ------------------------------------------------------------------------- 5. end-to-end M3Index.add
def bench_add(preset: str, n_docs: int, repeats: int, summary: Summary) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build_s, checkpoint = timed(lambda: build_checkpoint(Path(tmp) / preset, preset=preset))  # type: ignore[arg-type]
        encoder = M3Encoder(checkpoint, device="cpu", dtype="float32")
        texts = mixed_length_texts(encoder.tokenizer, n_docs, 190, 210, seed=1)
        tokens = int(sum(map(len, encoder.tokenize(texts, 8192)[0])))
        contenders = {
            "encode": lambda: encoder.encode_corpus(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True),
            "add": lambda: M3Index(encoder).add(texts),
        }
        times, _ = interleaved(contenders, repeats)
    summary.build.append([f"`M3Index.add`, end to end, '{preset}' checkpoint ({n_docs} texts, {tokens / n_docs:.0f} tokens each)",
                          ms(times["add"] * 1000 / n_docs),
                          f"`encode_corpus` alone: {ms(times['encode'] * 1000 / n_docs)} ({times['encode'] / times['add']:.0%} of add)"])


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="documents for sparse and dense search")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=100, help="ColBERT rerank depth")
    parser.add_argument("--colbert-docs", type=int, default=300, help="documents in the ColBERT store (memory: ~1.5 MB each)")
    parser.add_argument("--tiny-docs", type=int, default=500, help="texts for end-to-end add on the 'tiny' checkpoint")
    parser.add_argument("--wide-docs", type=int, default=24, help="texts for end-to-end add on the 'wide' checkpoint (0: skip)")
    args = parser.parse_args()
    assert args.candidates <= args.colbert_docs and args.docs >= CHUNK

    print(f"numpy {np.__version__}, scipy {scipy.__version__}, faiss {faiss.__version__}, torch {torch.__version__}, "
          f"{faiss.omp_get_max_threads()} threads; seed {args.seed}, median of {args.repeats} interleaved repeats")
    rng = np.random.default_rng(args.seed)
    summary = Summary()
    started = time.perf_counter()
    bench_sparse(args, rng, summary)
    bench_colbert(args, rng, summary)
    bench_dense(args, rng, summary)
    bench_add("tiny", args.tiny_docs, args.repeats, summary)
    if args.wide_docs:
        bench_add("wide", args.wide_docs, max(1, args.repeats - 1), summary)

    table("4. Index memory per document", ["representation", "bytes per document", "note"], summary.memory)
    table("5. Build time per 1,000 documents (store inserts exclude encoding; `M3Index.add` includes it)",
          ["what", "ms per 1k documents", "note"], summary.build)
    table("Summary: speed-ups, measured in the same run", ["measurement", "m3rag ms", "peer ms", "speed-up", "target"], summary.ratios)
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
