"""Index primitives: m3rag's stores vs the way integrations do it today, same data, same run.

    python benchmarks/retrieval.py [--docs 100000] [--queries 20] [--repeats 3] [--seed 0] [--threads 1]

What is compared (speed-up = peer time / m3rag time, per query, median over --queries x --repeats
timings; the contenders take turns query by query, so background load hits them alike):

1. Sparse search over --docs documents: ``SparseStore.scores`` (CSC inverted index) +
   ``scoring.top_k``, vs FlagEmbedding's own ``M3Embedder.compute_lexical_matching_score(query,
   docs)``: a Python loop over one ``{str(token_id): weight}`` dict per document, then a numpy
   top-10. The top-10 ids must be identical.
2. ColBERT reranking of 100 candidates of ~256 tokens for a 32-token query:
   ``ColbertStore.gather`` (float16 and float32 stores) + ``scoring.colbert_scores_flat``, vs a
   loop of FlagEmbedding's ``M3Embedder.colbert_score(q, p)`` over the candidates' float32 arrays.
   Scores must match (float32 store: to 1e-5).
3. Dense search over --docs documents: ``DenseStore`` flat (faiss ``IndexFlatIP``) with one and
   with --queries queries per call, and HNSW (m3rag's defaults), vs numpy ``D @ q`` +
   ``argpartition``; HNSW recall@10 against flat.
4. Index memory per document, from the arrays' ``nbytes`` (ColBERT: fp16 at 256 tokens/document).
5. Insert time per 1k documents of each store (vectors given: encoding excluded), and the real
   ``M3Index.add`` of ~200-token texts on the "tiny" and "wide" test checkpoints, next to
   ``encode_corpus`` of the same texts (encoding dominates).

The vectors of 1-4 are synthetic, shaped like BGE-M3's (no model needed). Dense: 1024-d,
L2-normalised, around 1,000 topics plus a shared direction (unrelated documents have cosine ~0.4,
as BGE-M3's anisotropic vectors do); queries are noisy copies of random documents (cosine ~0.8).
Sparse: vocabulary 250,002, 40-80 distinct token ids per document and 8-12 per query drawn from a
Zipf distribution (exponent 1), weights uniform in 0.01-0.4. ColBERT: 1024-d unit vectors.

FlagEmbedding's two methods do not use ``self``; they are called unbound with ``None``, so no
model is loaded for them. Needs the 'test' extra (FlagEmbedding).

Threads: by default every pool (numpy's and faiss's OpenBLAS, torch's and faiss's OpenMP) runs one
thread (``--threads 1``, set with threadpoolctl), so both sides get the same single core. With the
default pools, torch's OpenMP workers spin for a while after each call and a numpy ``D @ q`` that
follows runs ~10x slower on 2 cores; with contenders taking turns that measures the turn order,
and on a shared machine the other jobs, rather than the code. ``--threads 0`` keeps the defaults.
Absolute times on a shared machine are noise; the ratios are the result. About 3-4 minutes on 2
cores at the defaults, most of it the HNSW build and the peer's sparse loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import AVX2_ENV, describe_cpu
from _texts import mixed_length_texts
from FlagEmbedding.inference.embedder.encoder_only.m3 import M3Embedder

from m3rag import M3Encoder, M3Index, scoring
from m3rag.stores.local.colbert import COLBERT_DTYPES, ColbertStore, compute_for
from m3rag.stores.local.dense import DenseStore
from m3rag.stores.local.sparse import SparseStore
from m3rag.testing import build_checkpoint

DIM = 1024
VOCAB = 250_002
FIRST_TOKEN, LAST_TOKEN = 4, 250_000  # ids 0-3 are <s> <pad> </s> <unk>; 250001 is <mask>
K = 10
CHUNK = 1_000  # documents per add() call when building the stores
COLBERT_TOKENS = 256
QUERY_TOKENS = 32


# ---------------------------------------------------------------------------------------- timing
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@dataclass
class Contender:
    """One way to answer the queries: ``run(i)`` answers unit ``i`` of ``units``; a unit covers
    ``per_unit`` queries and returns their answers as a list (``per_unit > 1``) or one answer."""

    run: Callable[[int], Any]
    units: int
    per_unit: int = 1


def one_by_one(fn: Callable[[int], Any], queries: int) -> Contender:
    return Contender(fn, queries)


def all_at_once(fn: Callable[[], list[Any]], queries: int) -> Contender:
    return Contender(lambda _: fn(), 1, queries)


def measure(contenders: dict[str, Contender], repeats: int) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """A warm-up round (its answers are returned, per query, for checks), then ``repeats`` rounds in
    which the contenders take turns unit by unit, in alternating order. Returns the median seconds
    per query of each contender."""
    answers: dict[str, list[Any]] = {}
    for name, c in contenders.items():
        units = [c.run(u) for u in range(c.units)]
        answers[name] = [a for unit in units for a in unit] if c.per_unit > 1 else units
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(repeats):
        for unit in range(max(c.units for c in contenders.values())):
            for name in names if (round_ + unit) % 2 == 0 else reversed(names):
                c = contenders[name]
                if unit < c.units:
                    times[name].append(timed(partial(c.run, unit))[0] / c.per_unit)
    return {name: statistics.median(t) for name, t in times.items()}, answers


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
    """What sections 4 and 5 and the final summary collect along the way."""

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
        # each row's distinct ids in random order, then the first `wanted` of them
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
    """FlagEmbedding's lexical weights, ``{str(token_id): weight}`` per row: as FlagEmbedding emits
    them (a ``defaultdict`` of ``np.float32``) or with plain Python ``float`` values."""
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
    """Documents ``sqrt(.4) shared + sqrt(.25) topic + sqrt(.35) noise``, normalised (1,000
    topics), and queries = random documents plus noise, normalised (cosine ~0.8 to the source)."""
    shared = unit_rows(rng, 1)
    topics = unit_rows(rng, 1_000)
    docs = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        block = 0.35**0.5 * unit_rows(rng, m)  # Python floats keep float32 (np.sqrt would give float64)
        block += 0.25**0.5 * topics[rng.integers(0, len(topics), m)] + 0.4**0.5 * shared
        docs[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = docs[rng.integers(0, n, n_queries)] + 0.6**0.5 * unit_rows(rng, n_queries)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert docs.dtype == queries.dtype == np.float32
    return docs, queries


def numpy_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The usual numpy top-k: ``argpartition``, then those ``k`` sorted by score."""
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


# ------------------------------------------------------------------------------ 1. sparse search
def bench_sparse(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    n, nq = args.docs, args.queries
    docs = zipf_weights(rng, n, 40, 80)
    queries = zipf_weights(rng, nq, 8, 12)
    query_rows = [queries[[i]] for i in range(nq)]  # one query as encode_queries gives it: a 1-row CSR

    store = SparseStore(VOCAB)
    add_s, _ = timed(lambda: [store.add(docs[i : i + CHUNK]) for i in range(0, n, CHUNK)])
    first_s, _ = timed(lambda: store.scores(query_rows[0]))  # the first search builds the inverted index (CSC)
    again_s, _ = timed(lambda: store.scores(query_rows[0]))
    finish_s = max(0.0, first_s - again_s)
    csr = store.matrix
    csc = csr.tocsc()  # the same size as the store's inverted index
    tokens = csr.nnz / n
    summary.build.append(
        [
            "sparse (`SparseStore`: add, then the CSC built by the first search)",
            ms((add_s + finish_s) * CHUNK / n),
            f"add {ms(add_s * CHUNK / n)} + CSC at the first search {ms(finish_s * CHUNK / n)}",
        ]
    )
    summary.memory += [
        [
            "sparse CSR (`SparseStore.matrix`)",
            f"{nbytes(csr) / n:,.0f}",
            f"{tokens:.1f} tokens/doc: float32 weight + int32 id, plus indptr",
        ],
        [
            "sparse CSC (the inverted index, built at the first search)",
            f"{nbytes(csc) / n:,.0f}",
            "the same entries by token",
        ],
        [
            "sparse as FlagEmbedding dicts (peer: `str` keys, `np.float32` values)",
            f"{dict_bytes_per_doc(docs):,.0f}",
            "tracemalloc over 1,000 documents",
        ],
    ]

    emitted, floats = flag_dicts(docs, python_floats=False), flag_dicts(docs, python_floats=True)
    q_emitted, q_floats = flag_dicts(queries, python_floats=False), flag_dicts(queries, python_floats=True)

    def peer(q: dict[str, Any], doc_dicts: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(M3Embedder.compute_lexical_matching_score(None, [q], doc_dicts)[0], dtype=np.float64)
        return numpy_top_k(s, K), s

    def ours(i: int) -> tuple[np.ndarray, np.ndarray]:
        s = store.scores(query_rows[i])[0]
        return scoring.top_k(s, K), s

    def ours_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        s = store.scores(queries)
        return [(scoring.top_k(s[i], K), s[i]) for i in range(nq)]

    peer_name = "same loop on dicts of Python `float` (the peer at its best)"
    ours_name = "m3rag `SparseStore.scores` + `scoring.top_k`, one query per call"
    contenders = {
        "FlagEmbedding `compute_lexical_matching_score` on dicts as it emits them (`np.float32` values)": one_by_one(
            lambda i: peer(q_emitted[i], emitted), nq
        ),
        peer_name: one_by_one(lambda i: peer(q_floats[i], floats), nq),
        ours_name: one_by_one(ours, nq),
        f"m3rag, all {nq} queries in one `scores` call": all_at_once(ours_batch, nq),
    }
    times, answers = measure(contenders, args.repeats)
    for name in contenders:
        for (top, s), (ref_top, ref_s) in zip(answers[name], answers[ours_name]):
            assert np.array_equal(top, ref_top), f"top-{K} ids differ: {name}"
            assert np.abs(s - ref_s).max() < 1e-5, f"scores differ: {name}"

    # a search right after an add(): the CSR is joined again and the CSC rebuilt from scratch
    after_add = []
    for i in range(args.repeats):
        store.add(docs[[i]])
        after_add.append(timed(partial(store.scores, query_rows[i % nq]))[0])
    times["m3rag, first query after an `add()` of 1 document (`SparseStore.scores` only)"] = statistics.median(after_add)

    best = times[peer_name]
    table(
        f"1. Sparse search: {n:,} documents ({tokens:.1f} tokens each), {nq} queries, top-{K}",
        ["run", "ms per query", "speed-up vs the peer at its best"],
        [[name, ms(t), f"{best / t:,.1f}x"] for name, t in times.items()],
    )
    print(f"\nTop-{K} ids identical for all {nq} queries (m3rag vs both peers); scores equal to 1e-5.")
    summary.ratios.append(
        [
            f"sparse search, {n:,} docs (vs FlagEmbedding's dict loop at its best)",
            ms(times[ours_name]),
            ms(best),
            f"{best / times[ours_name]:,.0f}x",
            ">= 50x",
        ]
    )


def nbytes(m: sp.csr_array | sp.csc_array) -> int:
    return int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)


def dict_bytes_per_doc(matrix: sp.csr_array, n: int = 1_000) -> float:
    """Memory of lexical weights as FlagEmbedding builds them: a fresh ``str`` key and an
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
def related_query(rng: np.random.Generator, flat: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A 32-token query whose tokens lie near tokens of the first 20 candidates (nearer for earlier
    ones) and of none of the rest: its scores spread like a real query's, so the top-10 agreement
    measures precision, not the near-ties of unrelated random vectors."""
    picks = []
    for rank, doc in enumerate(rows[:QUERY_TOKENS].tolist()):
        if rank >= 20:
            break
        span = flat[offsets[doc] : offsets[doc + 1]]
        picks.append(span[rng.integers(len(span))] + (0.6 + 0.05 * rank) * unit_rows(rng, 1)[0])
    q = np.vstack([*picks, unit_rows(rng, QUERY_TOKENS - len(picks))])
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def bench_colbert(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    n, nq = args.colbert_docs, args.queries
    lengths = rng.integers(COLBERT_TOKENS - 64, COLBERT_TOKENS + 65, size=n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = unit_rows(rng, int(offsets[-1]))
    per_doc = [flat[offsets[i] : offsets[i + 1]] for i in range(n)]  # the peer's float32 arrays

    stores: dict[str, ColbertStore] = {}
    build_s: dict[str, float] = {}
    for dtype in COLBERT_DTYPES:
        store = stores[dtype] = ColbertStore(DIM, dtype)

        def build(store: ColbertStore = store) -> None:
            for lo in range(0, n, 100):
                hi = min(lo + 100, n)
                store.add(flat[offsets[lo] : offsets[hi]], offsets[lo : hi + 1] - offsets[lo])
            store.seal()  # joins the chunks, as a save does

        build_s[dtype], _ = timed(build)
    summary.build.append(
        [
            f"ColBERT (`ColbertStore` fp16: add + join; {lengths.mean():.0f} tokens/doc)",
            ms(build_s["float16"] * 1000 / n),
            ", ".join(f"{k}: {ms(v * 1000 / n)}" for k, v in build_s.items() if k != "float16"),
        ]
    )
    for dtype, store in stores.items():
        summary.memory.append(
            [
                f"ColBERT {dtype} (`ColbertStore`, {COLBERT_TOKENS} tokens/doc)",
                f"{store.bytes_per_token * COLBERT_TOKENS + 16:,}",
                f"{store.bytes_per_token:,} B/token + a 16-byte span",
            ]
        )
    summary.memory.append(
        [
            f"ColBERT as float32 arrays (peer, {COLBERT_TOKENS} tokens/doc)",
            f"{sys.getsizeof(np.zeros((COLBERT_TOKENS, DIM), np.float32)):,.0f}",
            "one ndarray per document",
        ]
    )

    work = []
    for _ in range(nq):
        rows = rng.choice(n, size=args.candidates, replace=False)
        work.append((related_query(rng, flat, offsets, rows), rows))

    def peer(i: int) -> np.ndarray:
        q, rows = work[i]
        return np.array([float(M3Embedder.colbert_score(None, q, per_doc[r])) for r in rows.tolist()])

    def exact(i: int) -> np.ndarray:
        q, rows = work[i]
        return np.array([float((q @ per_doc[r].T).max(axis=1).mean(dtype=np.float64)) for r in rows.tolist()])

    peer_name = "FlagEmbedding `colbert_score`, one call per candidate (float32 arrays)"
    contenders = {peer_name: one_by_one(peer, nq)}
    ours = {}
    for dtype, store in stores.items():
        name = f"m3rag `ColbertStore.scores`, {dtype} store, {compute_for(dtype)} products"
        ours[name] = dtype
        contenders[name] = one_by_one(lambda i, store=store: store.scores(*work[i]), nq)
    forced = "m3rag, bfloat16 store, float32 products (what an AVX2-only CPU runs)"
    contenders[forced] = one_by_one(lambda i: stores["bfloat16"].scores(*work[i], compute="float32"), nq)
    times, answers = measure(contenders, args.repeats)
    references = [exact(i) for i in range(nq)]
    base = times[peer_name]
    rows_out = []
    for name, t in times.items():
        errors = [float(np.abs(a - ref).max()) for a, ref in zip(answers[name], references)]
        agree = [
            len(set(scoring.top_k(a, K).tolist()) & set(scoring.top_k(ref, K).tolist())) / K for a, ref in zip(answers[name], references)
        ]
        if name == peer_name or ours.get(name) == "float32":
            assert max(errors) < 1e-5, (name, max(errors))
        rows_out.append([name, ms(t), f"{base / t:.2f}x", f"{max(errors):.1e}", f"{np.mean(agree):.3f}"])
        if name in ours:
            summary.ratios.append(
                [
                    f"ColBERT rerank, {args.candidates} x ~{COLBERT_TOKENS} tokens, {ours[name]} store "
                    f"({compute_for(ours[name])} products; "
                    f"max error {max(errors):.0e}, top-{K} agreement {np.mean(agree):.3f}) vs per-pair `colbert_score`",
                    ms(t),
                    ms(base),
                    f"{base / t:.2f}x",
                    ">= 3x",
                ]
            )
    table(
        f"2. ColBERT rerank: {args.candidates} candidates of {COLBERT_TOKENS - 64}-{COLBERT_TOKENS + 64} tokens (of {n} stored), "
        f"{QUERY_TOKENS}-token queries, {nq} queries, scored straight from the store",
        ["run", "ms per query", "speed-up vs FlagEmbedding", "max abs score error vs float32", f"top-{K} agreement (set)"],
        rows_out,
    )


# ------------------------------------------------------------------------------- 3. dense search
def bench_dense(args: argparse.Namespace, rng: np.random.Generator, summary: Summary) -> None:
    n, nq = args.docs, args.queries
    docs, queries = dense_corpus(rng, n, nq)
    flat, hnsw = DenseStore(DIM, "flat"), DenseStore(DIM, "hnsw")
    build_threads = args.default_faiss_threads  # a build is no race: faiss gets every core (HNSW insertion is parallel)
    faiss.omp_set_num_threads(build_threads)
    try:
        for label, store in (
            ("dense flat (`DenseStore`, faiss `IndexFlatIP`)", flat),
            ("dense HNSW (`DenseStore` defaults: M 32, efConstruction 200)", hnsw),
        ):
            seconds, _ = timed(lambda store=store: [store.add(docs[i : i + CHUNK]) for i in range(0, n, CHUNK)])
            summary.build.append(
                [
                    label,
                    ms(seconds * CHUNK / n),
                    f"{n:,} documents in {n // CHUNK} add() calls, faiss on {build_threads} threads",
                ]
            )
    finally:
        faiss.omp_set_num_threads(args.threads or build_threads)
    graph = hnsw.index.hnsw
    graph_bytes = graph.neighbors.size() * 4 + graph.offsets.size() * 8 + graph.levels.size() * 4
    summary.memory += [
        ["dense flat", f"{flat.index.ntotal * DIM * 4 / n:,.0f}", f"{DIM} x float32"],
        [
            "dense HNSW",
            f"{(hnsw.index.ntotal * DIM * 4 + graph_bytes) / n:,.0f}",
            f"vectors + graph ({graph_bytes / n:,.0f} B/doc)",
        ],
    ]
    half = min(2000, n // 2)
    cosine = float((docs[:half] @ docs[half : 2 * half].T).mean())

    def numpy_one(i: int) -> tuple[np.ndarray, np.ndarray]:
        s = docs @ queries[i]
        top = numpy_top_k(s, K)
        return s[top], top

    def numpy_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        return [(row[top], top) for row in queries @ docs.T for top in [numpy_top_k(row, K)]]

    def store_one(store: DenseStore, i: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = store.search(queries[i : i + 1], K, None)
        return scores[0], rows[0]

    def store_batch(store: DenseStore) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(*store.search(queries, K, None)))

    def faiss_batch() -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(*flat.index.search(queries, K)))

    base_name = "numpy `D @ q` + `argpartition`, one query per call"
    contenders = {
        base_name: one_by_one(numpy_one, nq),
        f"numpy `Q @ D.T`, {nq} queries per call": all_at_once(numpy_batch, nq),
        "m3rag `DenseStore` flat, one query per call": one_by_one(lambda i: store_one(flat, i), nq),
        f"m3rag `DenseStore` flat, {nq} queries per call": all_at_once(lambda: store_batch(flat), nq),
        f"faiss `IndexFlatIP.search` itself, {nq} queries per call (m3rag before this release)": all_at_once(faiss_batch, nq),
        "m3rag `DenseStore` HNSW (efSearch 128), one query per call": one_by_one(lambda i: store_one(hnsw, i), nq),
        f"m3rag `DenseStore` HNSW, {nq} queries per call": all_at_once(lambda: store_batch(hnsw), nq),
    }
    times, answers = measure(contenders, args.repeats)
    names = list(contenders)
    for name in names[1:5]:  # exact searches: the same top-k scores (ids may swap within ties)
        for (s, _), (ref, _) in zip(answers[name], answers[base_name]):
            assert np.abs(np.sort(s) - np.sort(ref)).max() < 1e-5, name
    for (s1, r1), (s2, r2) in zip(answers[names[2]], answers[names[3]]):  # batched = single, bit for bit
        assert np.array_equal(r1, r2) and np.array_equal(s1, s2)
    recall = {
        name: float(np.mean([len(set(r.tolist()) & set(ref.tolist())) / K for (_, r), (_, ref) in zip(answers[name], answers[names[2]])]))
        for name in names[5:]
    }
    base = times[base_name]
    table(
        f"3. Dense search: {n:,} x {DIM} float32 documents (unrelated ones at cosine {cosine:.2f}), {nq} queries, top-{K}",
        ["run", "ms per query", "speed-up vs numpy, one query per call", f"recall@{K} vs flat"],
        [[name, ms(t), f"{base / t:,.1f}x", f"{recall[name]:.3f}" if name in recall else "exact"] for name, t in times.items()],
    )
    summary.ratios.append(
        [
            f"dense flat search, {n:,} docs: `search` of {nq} queries in one call vs {nq} calls (throughput; identical results)",
            ms(times[names[3]]),
            ms(times[names[2]]),
            f"{times[names[2]] / times[names[3]]:,.1f}x",
            ">= 4x",
        ]
    )
    for name, label in (
        (names[2], "flat, 1 query per call"),
        (names[3], f"flat, {nq} queries per call"),
        (names[5], "HNSW, 1 query per call"),
    ):
        extra = f", recall@{K} {recall[name]:.3f}" if name in recall else ""
        summary.ratios.append(
            [
                f"dense search, {n:,} docs, {label}{extra} (vs numpy `D @ q`)",
                ms(times[name]),
                ms(base),
                f"{base / times[name]:,.1f}x",
                "-",
            ]
        )


# ---------------------------------------------------------------------- 5. end-to-end M3Index.add
def bench_add(preset: str, n_docs: int, repeats: int, summary: Summary) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build_checkpoint(Path(tmp) / preset, preset=preset)  # type: ignore[arg-type]
        encoder = M3Encoder(checkpoint, device="cpu", dtype="float32")
        texts = mixed_length_texts(encoder.tokenizer, n_docs, 190, 210, seed=1)
        tokens = int(sum(map(len, encoder.tokenize(texts, 8192)[0])))
        contenders = {
            "encode": Contender(
                lambda _: encoder.encode_corpus(texts, return_dense=True, return_sparse=True, return_colbert_vecs=True),
                1,
            ),
            "add": Contender(lambda _: M3Index(encoder).add(texts), 1),
        }
        times, _ = measure(contenders, repeats)
    summary.build.append(
        [
            f"`M3Index.add` end to end, '{preset}' checkpoint, fp32 ({n_docs} texts of {tokens / n_docs:.0f} tokens)",
            ms(times["add"] * 1000 / n_docs),
            f"`encode_corpus` alone: {ms(times['encode'] * 1000 / n_docs)} ({times['encode'] / times['add']:.0%} of it)",
        ]
    )


# ------------------------------------------------------------------- 6. M3Index query, 10k documents
LLAMA_CHILD = r"""
import json, sys, time
cfg = json.loads(sys.argv[1])
if cfg["threads"]:
    import torch
    from threadpoolctl import threadpool_limits
    threadpool_limits(cfg["threads"])
    torch.set_num_threads(cfg["threads"])
from llama_index.core.schema import TextNode
from llama_index.indices.managed.bge_m3 import BGEM3Index
texts = json.load(open(cfg["texts"]))
nodes = [TextNode(text=t, id_=str(i)) for i, t in enumerate(texts)]
index = BGEM3Index(nodes, model_name=cfg["checkpoint"], batch_size=8, weights_for_different_modes=[1.0, 0.3, 1.0])
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    query = json.loads(line)
    start = time.perf_counter()
    hits = index.query(query, top_k=10)
    print(json.dumps({"seconds": time.perf_counter() - start, "ids": [h.node.node_id for h in hits]}), flush=True)
"""

PLANS: dict[str, dict[str, Any]] = {
    "hybrid + ColBERT rerank of the top 100": dict(mode="hybrid", rerank="colbert"),
    "dense only": dict(mode="dense"),
    "sparse only": dict(mode="sparse"),
}


class LlamaPeer:
    """llama-index's ``BGEM3Index`` in a child process of the benchmark venv (``--llama-python``),
    answering one query per line on stdin: its query time as measured inside that process."""

    def __init__(self, python: str, checkpoint: Path, texts_file: Path, threads: int) -> None:
        import subprocess

        cfg = json.dumps({"checkpoint": str(checkpoint), "texts": str(texts_file), "threads": threads})
        self.proc = subprocess.Popen([python, "-c", LLAMA_CHILD, cfg], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{python} could not build BGEM3Index (is llama-index-indices-managed-bge-m3 installed there?)")

    def query(self, text: str) -> float:
        self.proc.stdin.write(json.dumps(text) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(self.proc.stdout.readline())["seconds"])  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=60)


def query_p50(index: M3Index, queries: list[str], repeats: int, peer: LlamaPeer | None = None) -> dict[str, float]:
    """p50 ms per plan over ``queries`` x ``repeats``: the plans take turns query by query; the peer
    answers the same queries in its own block after each round (a peer query right before an m3rag
    query would evict m3rag's caches and time the peer's aftermath)."""
    for q in queries[:3]:
        for plan in PLANS.values():
            index.search(q, k=K, **plan)
    times: dict[str, list[float]] = {name: [] for name in PLANS}
    if peer is not None:
        peer.query(queries[0])  # warm-up
        times["peer"] = []
    for round_ in range(repeats):
        for j, q in enumerate(queries):
            order = list(PLANS.items()) if (round_ + j) % 2 == 0 else list(PLANS.items())[::-1]
            for name, plan in order:
                times[name].append(timed(lambda plan=plan, q=q: index.search(q, k=K, **plan))[0])
        if peer is not None:
            times["peer"] += [peer.query(q) for q in queries]
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def batch_throughput(index: M3Index, queries: list[str], repeats: int) -> tuple[float, float]:
    """ms per query of ``search_batch(queries, mode="dense")`` and of one ``search`` per query
    (query encoding included); the hits must be the same documents in the same order."""
    singles = [index.search(q, k=K, mode="dense") for q in queries]
    batch = index.search_batch(queries, k=K, mode="dense")
    for a, b in zip(singles, batch):
        assert np.allclose([h.score for h in a], [h.score for h in b], rtol=1e-5, atol=1e-6), "search_batch scores differ"
        # a query encoded alone or in a batch differs by float rounding (~1e-7), which may reorder
        # documents of equal score (duplicate texts): same documents above the last tied score
        cut = min(h.score for h in a) + 1e-6
        assert {h.id for h in a if h.score > cut} == {h.id for h in b if h.score > cut}, "search_batch differs from single searches"
    one, many = [], []
    for _ in range(repeats):
        one.append(timed(lambda: [index.search(q, k=K, mode="dense") for q in queries])[0])
        many.append(timed(lambda: index.search_batch(queries, k=K, mode="dense"))[0])
    return statistics.median(many) * 1e3 / len(queries), statistics.median(one) * 1e3 / len(queries)


INDEX_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
import retrieval
retrieval.index_child(json.loads(sys.argv[1]))
"""


def index_child(cfg: dict[str, Any]) -> None:
    """In a child process (ISA caps set in its environment): load the saved index, print p50 per plan."""
    if cfg["threads"]:
        from threadpoolctl import threadpool_limits

        threadpool_limits(cfg["threads"])
        torch.set_num_threads(cfg["threads"])
    from m3rag import _cpu

    index = M3Index.load(cfg["index"], M3Encoder(cfg["checkpoint"], device="cpu", dtype="float32"), mmap=False)
    p50 = query_p50(index, cfg["queries"], cfg["repeats"])
    batch, single = batch_throughput(index, cfg["queries"], cfg["repeats"])
    print(json.dumps({"p50": p50, "batch": batch, "single": single, "cpu": _cpu.matrix_features(), "dtype": str(index.encoder.dtype)}))


def bench_index_query(args: argparse.Namespace, summary: Summary) -> None:
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="m3rag-bench-"))
    checkpoint = build_checkpoint(tmp / "tiny", preset="tiny")
    encoder = M3Encoder(checkpoint, device="cpu", dtype="float32")
    texts = mixed_length_texts(encoder.tokenizer, args.index_docs, 32, 256, seed=2)
    queries = mixed_length_texts(encoder.tokenizer, args.queries, 8, 24, seed=3)
    build_s, index = timed(lambda: M3Index.from_texts(texts, encoder))
    index.save(tmp / "index")
    peer = None
    if args.llama_python:
        (tmp / "texts.json").write_text(json.dumps(texts))
        peer = LlamaPeer(args.llama_python, checkpoint, tmp / "texts.json", args.threads)
    try:
        p50 = query_p50(index, queries, args.repeats, peer)
    finally:
        if peer is not None:
            peer.close()
    batch, single = batch_throughput(index, queries, args.repeats)
    rows = [["native: " + machine(), name, f"{t:.2f}", "<= 10"] for name, t in p50.items() if name != "peer"]
    emulated: dict[str, Any] | None = None
    if not args.no_emulation:
        cfg = {
            "index": str(tmp / "index"),
            "checkpoint": str(checkpoint),
            "queries": queries,
            "repeats": args.repeats,
            "threads": args.threads,
        }
        done = subprocess.run(
            [sys.executable, "-c", INDEX_CHILD, json.dumps(cfg), str(Path(__file__).resolve().parent)],
            env={**os.environ, **AVX2_ENV}, stdout=subprocess.PIPE, text=True, check=True,  # its errors show on stderr
        )  # fmt: skip
        emulated = json.loads(done.stdout.strip().splitlines()[-1])
        rows += [
            [f"AVX2 emulated (ISA caps on this CPU; encoder {emulated['dtype']})", name, f"{t:.2f}", "<= 10"]
            for name, t in emulated["p50"].items()
        ]
    table(
        f"6. `M3Index.search` over {len(texts):,} documents ('tiny' checkpoint, k={K}, query encoding included; "
        f"fp32 encoder, fp16 ColBERT store: the defaults), p50 over {len(queries)} queries x {args.repeats}",
        ["machine", "plan", "p50 ms", "target ms"],
        rows,
    )
    hybrid = next(iter(PLANS))
    if peer is not None:
        print(
            "\nllama-index `BGEM3Index.query` (FlagEmbedding query encoding, then dense, a sparse dict loop and a ColBERT loop "
            "over every document): "
              f"p50 {p50['peer']:,.0f} ms; m3rag {hybrid}: {p50[hybrid]:.2f} ms, {p50['peer'] / p50[hybrid]:,.0f}x")  # fmt: skip
        summary.ratios.append(
            [
                f"`M3Index` query, {len(texts):,} docs, {hybrid} (vs llama-index `BGEM3Index.query`)",
                f"{p50[hybrid]:.2f}",
                f"{p50['peer']:,.0f}",
                f"{p50['peer'] / p50[hybrid]:,.0f}x",
                ">= 40x",
            ]
        )
    else:
        print("\n(llama-index peer not run: pass --llama-python, see the module docstring)")
    summary.ratios.append([f"`M3Index` query p50, {len(texts):,} docs, {hybrid}, native", f"{p50[hybrid]:.2f}", "-", "-", "<= 10 ms"])
    if emulated is not None:
        summary.ratios.append(["`M3Index` query p50, same, AVX2 emulated", f"{emulated['p50'][hybrid]:.2f}", "-", "-", "<= 10 ms"])
    also = "" if emulated is None else f"; AVX2 emulated: {emulated['single'] / emulated['batch']:.1f}x"
    print(f"\n`M3Index.search_batch` of {len(queries)} dense queries: {batch:.2f} ms per query; {len(queries)} `search` calls: "
          f"{single:.2f} ms per query ({single / batch:.1f}x throughput, same hits){also}")  # fmt: skip
    summary.ratios.append(
        [
            f"`M3Index.search_batch` of {len(queries)} dense queries vs {len(queries)} `search` calls "
            f"({len(texts):,} docs, encoding included)",
            f"{batch:.2f}",
            f"{single:.2f}",
            f"{single / batch:.1f}x",
            ">= 4x",
        ]
    )
    summary.build.append(
        [
            f"`M3Index.from_texts` of the {len(texts):,} query-benchmark documents (tiny, {encoder.dtype})",
            ms(build_s * 1000 / len(texts)),
            "",
        ]
    )


# ------------------------------------------------------------------------------------- 7. threads
STALL_CHILD = r"""
import json, statistics, sys, time
mode = sys.argv[1]
if mode != "plain":
    import m3rag
    m3rag.set_thread_policy(mode)  # before torch, numpy's BLAS and faiss load
import numpy as np, torch, faiss
rng = np.random.default_rng(0)
x, w = torch.randn(64, 1024), torch.randn(1024, 1024)
docs = rng.standard_normal((4000, 256), dtype=np.float32)
queries = docs[:20] + 0.1
hnsw = faiss.IndexHNSWFlat(256, 16)
hnsw.add(docs[:2000])
ops = {"numpy `Q @ D.T` (20 x 4,000 x 256)": lambda: queries @ docs.T, "faiss HNSW search, 20 queries": lambda: hnsw.search(queries, 10)}
out = {}
for name, op in ops.items():
    for _ in range(3):
        op()
    after, alone = [], []
    for _ in range(int(sys.argv[2])):
        x @ w
        time.sleep(0.02)  # torch's workers have gone to sleep
        start = time.perf_counter(); op(); alone.append(time.perf_counter() - start)
        x @ w
        start = time.perf_counter(); op(); after.append(time.perf_counter() - start)
    out[name] = [statistics.median(alone) * 1e3, statistics.median(after) * 1e3]
print(json.dumps(out))
"""


def bench_threads(args: argparse.Namespace) -> None:
    """A numpy / faiss call right after a torch call, each in a fresh process with the libraries'
    default pools, with ``OMP_WAIT_POLICY=PASSIVE``, and with m3rag's ``server`` thread policy."""
    import subprocess

    variants = {
        "library defaults (every pool on every core, OpenMP workers spin after each region)": ({}, "plain"),
        "`OMP_WAIT_POLICY=PASSIVE` in the environment": ({"OMP_WAIT_POLICY": "PASSIVE"}, "plain"),
        '`m3rag.set_thread_policy("notebook")`: torch every core, numpy\'s BLAS and faiss 1 thread': ({}, "notebook"),
        '`m3rag.set_thread_policy("server")`: every pool 1 thread, OpenMP workers sleep': ({}, "server"),
    }
    rows = []
    defaults: dict[str, float] = {}
    env_path = {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    for label, (env, mode) in variants.items():
        results = []
        for _ in range(args.stall_runs):
            done = subprocess.run(
                [sys.executable, "-c", STALL_CHILD, mode, str(args.stall_calls)],
                env={**os.environ, **env_path, **env},
                capture_output=True,
                text=True,
                check=True,
            )  # fmt: skip
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        for op in results[0]:
            alone = statistics.median(r[op][0] for r in results)
            after = statistics.median(r[op][1] for r in results)
            defaults.setdefault(op, after)
            rows.append([label, op, f"{alone:.2f}", f"{after:.2f}", f"{defaults[op] / after:.1f}x"])
    table(
        f"7. Threads: a numpy / faiss call 20 ms after a torch call and right after it (a 64x1024x1024 torch matmul on torch's "
        f"pool first), in fresh processes; medians of {args.stall_calls} calls x {args.stall_runs} processes",
        ["pools", "call", "ms, torch idle", "ms, right after torch", "speed-up vs library defaults (right after torch)"],
        rows,
    )


def _has_llama_peer() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("llama_index.indices.managed.bge_m3") is not None
    except ModuleNotFoundError:
        return False


def machine() -> str:
    return describe_cpu()


# ------------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000, help="documents for sparse and dense search")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads of every pool (BLAS, OpenMP, faiss, torch); 0: the libraries' defaults",
    )
    parser.add_argument("--candidates", type=int, default=100, help="ColBERT rerank depth")
    parser.add_argument("--colbert-docs", type=int, default=300, help="documents in the ColBERT store (~1.5 MB each while built)")
    parser.add_argument("--tiny-docs", type=int, default=500, help="texts for M3Index.add on the 'tiny' checkpoint")
    parser.add_argument("--wide-docs", type=int, default=16, help="texts for M3Index.add on the 'wide' checkpoint (0: skip)")
    parser.add_argument("--index-docs", type=int, default=10_000, help="documents of the M3Index query benchmark (section 6)")
    parser.add_argument(
        "--llama-python",
        default=os.environ.get("M3RAG_BENCH_LLAMA_PYTHON") or (sys.executable if _has_llama_peer() else None),
        help="python of a venv with llama-index-indices-managed-bge-m3, section 6's peer (default: this one, with the 'bench' extra)",
    )
    parser.add_argument("--no-emulation", action="store_true", help="skip the AVX2-emulated child of section 6")
    parser.add_argument("--stall-runs", type=int, default=3, help="processes per thread-policy variant (section 7)")
    parser.add_argument("--stall-calls", type=int, default=15)
    parser.add_argument("--sections", default="sparse,colbert,dense,add,index,threads", help="comma-separated subset to run")
    parser.add_argument("--quick", action="store_true", help="a small setting that runs in about a minute (the CI smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.docs, args.queries, args.repeats, args.candidates, args.colbert_docs = 2_000, 3, 1, 20, 40
        args.tiny_docs, args.wide_docs, args.index_docs, args.stall_runs, args.stall_calls = 20, 0, 300, 1, 3
    if args.candidates > args.colbert_docs or args.docs < CHUNK or args.queries < 1:
        parser.error("need --candidates <= --colbert-docs, --docs >= 1000 and --queries >= 1")
    args.default_faiss_threads = faiss.omp_get_max_threads()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)

    print(f"CPU: {machine()}; load average {os.getloadavg()[0]:.2f} at the start")
    print(
        f"numpy {np.__version__}, scipy {scipy.__version__}, faiss {faiss.__version__}, torch {torch.__version__}; "
        f"threads: torch {torch.get_num_threads()}, faiss {faiss.omp_get_max_threads()}; seed {args.seed}; "
        f"medians over {args.queries} queries x {args.repeats} repeats"
    )
    rng = np.random.default_rng(args.seed)
    summary = Summary()
    sections: dict[str, Callable[[], None]] = {
        "sparse": lambda: bench_sparse(args, rng, summary),
        "colbert": lambda: bench_colbert(args, rng, summary),
        "dense": lambda: bench_dense(args, rng, summary),
        "add": lambda: bench_add("tiny", args.tiny_docs, args.repeats, summary),
        "index": lambda: bench_index_query(args, summary),
        "threads": lambda: bench_threads(args),
    }
    if args.wide_docs:
        sections["wide add"] = lambda: bench_add("wide", args.wide_docs, max(1, args.repeats - 1), summary)
    wanted = set(args.sections.split(",")) | ({"wide add"} if "add" in args.sections.split(",") else set())
    took = {name: timed(run)[0] for name, run in sections.items() if name in wanted}

    table("4. Index memory per document", ["representation", "bytes per document", "note"], summary.memory)
    table(
        "5. Build time per 1,000 documents (store inserts exclude encoding; `M3Index.add` includes it)",
        ["what", "ms per 1k documents", "note"],
        summary.build,
    )
    table(
        "Summary: speed-ups measured in the same run",
        ["measurement", "m3rag ms/query", "peer ms/query", "speed-up", "target"],
        summary.ratios,
    )
    print(f"\nCPU: {machine()}; load average {os.getloadavg()[0]:.2f} at the end")
    print(f"\nTook {sum(took.values()):.0f} s: " + ", ".join(f"{name} {t:.0f} s" for name, t in took.items()) + ".")


if __name__ == "__main__":
    main()
