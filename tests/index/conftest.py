from __future__ import annotations

import pytest

from m3rag import M3Encoder, M3Index
from m3rag.testing import SAMPLE_TEXTS

DOCS = list(SAMPLE_TEXTS[:120])
LANGS = ["en", "fr", "de", "es", "zh"]
METAS = [{"n": i, "lang": LANGS[i % 5], "even": i % 2 == 0} for i in range(len(DOCS))]
IDS = [f"doc-{i}" for i in range(len(DOCS))]
QUERIES = [DOCS[3], DOCS[40][:30], "retrieval with dense and sparse vectors", DOCS[77].split(" ")[0], "检索 模型"]


@pytest.fixture(scope="module")
def index(encoder: M3Encoder) -> M3Index:
    idx = M3Index(encoder, colbert_dtype="float32")
    idx.add(DOCS, ids=IDS, metadatas=METAS)
    return idx
