from __future__ import annotations

from pathlib import Path

import pytest

from m3rag import M3Encoder

DOCS = [
    "BGE M3 gives dense, sparse and ColBERT representations from one forward pass.",
    "BM25 is a bag-of-words retrieval function that ranks documents by query terms.",
    "Le modèle encode des textes en plusieurs langues.",
    "Der Encoder liefert dichte und spärliche Vektoren.",
    "检索增强生成把检索结果交给大语言模型。",
    "Qdrant stores dense and sparse vectors for hybrid search.",
    "ColBERT scores a query by the maximum similarity of each token.",
]


@pytest.fixture(scope="session")
def model_name(tiny_checkpoint: Path) -> str:
    return str(tiny_checkpoint)


@pytest.fixture(autouse=True)
def fresh_registry() -> None:
    M3Encoder.clear_shared()
