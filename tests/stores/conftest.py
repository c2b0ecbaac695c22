"""Fixtures of the remote stores' tests: the local reference indexes and unreachable servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from m3rag import M3Encoder, M3Index
from tests.helpers import DOCS, IDS, METAS


@pytest.fixture(scope="module")
def local_fp16(encoder: M3Encoder) -> M3Index:
    """The corpus in a local index with the default float16 ColBERT store (Qdrant's default too)."""
    index = M3Index(encoder)
    index.add(DOCS, ids=IDS, metadatas=METAS)
    return index


@pytest.fixture
def refused_address() -> str:
    """An address where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_address() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
