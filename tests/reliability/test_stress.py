"""16 workers, hundreds of mixed calls on one shared encoder and index: serial results, no corruption."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import M3Encoder, M3Index, rerank
from m3rag.errors import UnknownIdError
from m3rag.langchain import M3Embeddings
from m3rag.testing import SAMPLE_TEXTS

pytestmark = [pytest.mark.slow]

DOCS = list(SAMPLE_TEXTS[:80])


def _job(kind: str, i: int, index: M3Index, emb: M3Embeddings) -> Any:
    text = SAMPLE_TEXTS[(i * 7) % len(SAMPLE_TEXTS)]
    if kind == "query":
        return np.array(emb.embed_query(text))
    if kind == "docs":
        return np.array(emb.embed_documents(list(SAMPLE_TEXTS[i % 50 : i % 50 + 3])))
    if kind == "search":
        return [(h.id, round(h.score, 5)) for h in index.search(text, k=5, rerank="colbert" if i % 2 else None)]
    return [(r.index, round(r.score, 5)) for r in rerank(index.encoder, text, DOCS[:12], mode="hybrid", top_n=4)]


def _equal(a: Any, b: Any) -> None:
    if isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, atol=1e-5)
    else:
        assert [x[0] for x in a] == [x[0] for x in b]
        np.testing.assert_allclose([x[1] for x in a], [x[1] for x in b], atol=1e-4)


@pytest.mark.parametrize("coalescing", [False, True])
def test_mixed_concurrent_calls_equal_serial(tiny_checkpoint: Path, coalescing: bool) -> None:
    encoder = M3Encoder(tiny_checkpoint, device="cpu")
    index = M3Index(encoder)
    index.add(DOCS, ids=[f"d{i}" for i in range(len(DOCS))])
    emb = M3Embeddings(encoder=encoder)
    jobs = [(kind, i) for i in range(75) for kind in ("query", "docs", "search", "rerank")]  # 300 calls
    random.Random(0).shuffle(jobs)
    serial = [_job(kind, i, index, emb) for kind, i in jobs]
    if coalescing:
        encoder.enable_coalescing(window_ms=2)
    try:
        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(lambda j: _job(j[0], j[1], index, emb), jobs))
    finally:
        encoder.disable_coalescing()
    for a, b in zip(serial, concurrent):
        _equal(a, b)


def test_writes_and_reads_from_threads_keep_the_index_whole(tiny_checkpoint: Path, tmp_path: Path) -> None:
    index = M3Index(M3Encoder(tiny_checkpoint, device="cpu"))
    index.add(DOCS[:20], ids=[f"base{i}" for i in range(20)])
    errors: list[BaseException] = []
    stop = threading.Event()
    deleted = {f"w{w}-{j}" for w in range(4) for j in range(10) if j % 3 == 0}

    def writer(w: int) -> None:
        try:
            for j in range(10):
                index.add([DOCS[20 + (w * 10 + j) % 60]], ids=[f"w{w}-{j}"])
                if j % 3 == 0:
                    index.delete([f"w{w}-{j}"])
            index.save(tmp_path / f"snap{w}")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                for hit in index.search(DOCS[3], k=8, rerank="colbert"):
                    assert hit.text and hit.id  # never a half-written entry
                    try:
                        index.get([hit.id])
                    except UnknownIdError:  # a writer deleted it after the search: only those may vanish
                        assert hit.id in deleted, hit.id
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(4)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    expected = {f"base{i}" for i in range(20)} | {f"w{w}-{j}" for w in range(4) for j in range(10) if j % 3}
    assert set(index.ids) == expected and len(index) == len(expected)
    loaded = M3Index.load(tmp_path / "snap3", index.encoder)
    assert set(loaded.ids) <= expected | {f"w{w}-{j}" for w in range(4) for j in range(10)}
