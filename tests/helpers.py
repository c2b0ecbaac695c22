"""Shared test data and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

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
