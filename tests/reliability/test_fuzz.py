"""Whatever users type: every call succeeds or raises one of m3rag's documented errors."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from m3rag import M3Encoder, M3Index, M3RagError

ANY_CHAR = st.characters(codec=None, categories=None)  # includes control chars, NUL, lone surrogates
TEXT = st.text(alphabet=ANY_CHAR, max_size=300)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def index(tiny_checkpoint: Path) -> M3Index:
    idx = M3Index(M3Encoder(tiny_checkpoint, device="cpu"))
    idx.add(["seed document", "another one"], ids=["a", "b"])
    return idx


@SETTINGS
@given(texts=st.lists(TEXT, max_size=5))
@example(texts=["x" * 50_000, " \t\n", "\x00\x00", "a\ud800b", "😀" * 100, "\u202eمرحبا", ""])
def test_encode_any_unicode(encoder: M3Encoder, texts: list[str]) -> None:
    try:
        out = encoder.encode(texts, max_length=512, return_sparse=True, return_colbert_vecs=True)
    except M3RagError:
        return
    assert len(out) == len(texts)


@SETTINGS
@given(
    texts=st.lists(TEXT, min_size=1, max_size=3),
    ids=st.one_of(st.none(), st.lists(st.one_of(TEXT, st.integers()), min_size=1, max_size=3)),
    metadata=st.dictionaries(
        st.one_of(TEXT, st.integers()), st.one_of(st.integers(), st.floats(), TEXT, st.none(), st.binary()), max_size=3
    ),
    query=TEXT,
)
def test_index_any_ids_metadata_and_queries(index: M3Index, texts: list[str], ids: list | None, metadata: dict, query: str) -> None:
    before = len(index)
    try:
        added = index.add(texts, ids=ids, metadatas=[metadata] * len(texts), upsert=True)
    except M3RagError:
        assert len(index) == before  # nothing stored
    else:
        assert all(i in index for i in added)
    with contextlib.suppress(M3RagError):
        index.search(query, k=3, rerank="colbert", filter=metadata or None)
