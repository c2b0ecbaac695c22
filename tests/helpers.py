"""Shared test data and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from m3rag.testing import SAMPLE_TEXTS

T = TypeVar("T")

# The index tests' corpus: 120 multilingual sample texts with metadata, and queries against it.
DOCS = list(SAMPLE_TEXTS[:120])
LANGS = ["en", "fr", "de", "es", "zh"]
METAS = [{"n": i, "lang": LANGS[i % 5], "even": i % 2 == 0} for i in range(len(DOCS))]
IDS = [f"doc-{i}" for i in range(len(DOCS))]
QUERIES = [DOCS[3], DOCS[40][:30], "retrieval with dense and sparse vectors", DOCS[77].split(" ")[0], "检索 模型"]

FRAMEWORK_DOCS = [
    "BGE M3 gives dense, sparse and ColBERT representations from one forward pass.",
    "BM25 is a bag-of-words retrieval function that ranks documents by query terms.",
    "Le modèle encode des textes en plusieurs langues.",
    "Der Encoder liefert dichte und spärliche Vektoren.",
    "检索增强生成把检索结果交给大语言模型。",
    "Qdrant stores dense and sparse vectors for hybrid search.",
    "ColBERT scores a query by the maximum similarity of each token.",
]


def run_with_heartbeat(work: Awaitable[T]) -> tuple[T, int]:
    """Run ``work`` on a fresh event loop beside a 1 ms heartbeat; returns its result and the
    number of beats (a blocked loop would beat about once)."""

    async def main() -> tuple[Any, int]:
        ticks = 0
        done = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        beat = asyncio.create_task(heartbeat())
        try:
            result = await work
        finally:
            done.set()
            await beat
        return result, ticks

    return asyncio.run(main())
