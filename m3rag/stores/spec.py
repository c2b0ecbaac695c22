"""``--store`` values of the command line as stores.

=============================  ==============================================================
``qdrant:PATH``                embedded Qdrant persisted in directory ``PATH``
``qdrant::memory:``            embedded Qdrant in this process's memory
``qdrant+http://host:6333``    a Qdrant server (``qdrant+https://...`` with TLS); the API key
                               comes from ``$QDRANT_API_KEY``
``milvus:FILE.db``             milvus-lite in file ``FILE.db``
``milvus+http://host:19530``   a Milvus server (``milvus+https://...``); the token
                               (``user:password`` or an API key) from ``$MILVUS_TOKEN``
anything else                  a local index directory: :func:`open_store` returns ``None``
=============================  ==============================================================
"""

from __future__ import annotations

import os
import re

from m3rag.errors import InputTypeError, InputValueError
from m3rag.stores.base import Store

__all__ = ["DEFAULT_COLLECTION", "open_store"]

DEFAULT_COLLECTION = "m3rag"
"""The collection a store spec uses when none is given."""
_ENGINE = re.compile(r"(?i)(qdrant|milvus)([+:])")
_FORMS = "qdrant:PATH, qdrant+http://HOST:PORT, milvus:FILE.db, milvus+http://HOST:PORT"
_URL = re.compile(r"(?i)(https?)://([^/\s].*)")


def open_store(spec: str | os.PathLike[str], *, collection: str | None = None) -> Store | None:
    """The store named by ``spec`` (see the module docstring), in ``collection`` (default
    :data:`DEFAULT_COLLECTION`); ``None`` when ``spec`` is a local index directory. A malformed
    spec is an :class:`~m3rag.InputValueError` saying what was expected."""
    if isinstance(spec, os.PathLike):
        return None
    if not isinstance(spec, str):
        raise InputTypeError(f"a store spec must be a str or a path, got {type(spec).__name__}")
    if collection is not None and (not isinstance(collection, str) or not collection):
        raise InputValueError(f"collection must be a non-empty str, got {collection!r}")
    name = collection or DEFAULT_COLLECTION
    match = _ENGINE.match(spec)
    if match is None:
        if "://" in spec:
            raise InputValueError(f"unknown store {spec!r}: use {_FORMS} or a directory")
        if not spec.strip():
            raise InputValueError("the store spec is empty: give a directory or qdrant:/milvus: store")
        return None
    engine, rest = match.group(1).lower(), spec[match.end() :]
    if match.group(2) == "+":
        url = _URL.fullmatch(rest)
        if url is None:
            raise InputValueError(f"store {spec!r}: expected {engine}+http://HOST:PORT or {engine}+https://HOST:PORT")
        address = f"{url.group(1).lower()}://{url.group(2)}"
        if engine == "qdrant":
            from m3rag.stores.qdrant import QdrantStore

            return QdrantStore(url=address, collection=name, api_key=os.environ.get("QDRANT_API_KEY") or None)
        from m3rag.stores.milvus import MilvusStore

        return MilvusStore(address, name, token=os.environ.get("MILVUS_TOKEN") or None)
    if not rest:
        hint = "" if engine == "qdrant" else " (a milvus-lite file ending in .db)"
        raise InputValueError(f"store {spec!r}: expected {engine}:PATH{hint}")
    if engine == "qdrant":
        from m3rag.stores.qdrant import QdrantStore

        if rest == ":memory:":
            return QdrantStore(location=":memory:", collection=name)
        return QdrantStore(path=rest, collection=name)
    if not rest.endswith(".db"):
        raise InputValueError(f"store {spec!r}: milvus-lite keeps an index in a file ending in .db, got {rest!r}")
    from m3rag.stores.milvus import MilvusStore

    return MilvusStore(rest, name)
