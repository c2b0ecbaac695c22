"""Where an :class:`~m3rag.M3Index` keeps its documents: the local store (default), Qdrant or Milvus.

``QdrantStore`` and ``MilvusStore`` need their extras (``pip install "m3rag[qdrant]"`` /
``"m3rag[milvus]"``); they are imported on first use. ``open_store("qdrant:PATH")`` and the
like turn the command line's ``--store`` values into stores.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from m3rag.stores.base import Store
    from m3rag.stores.local.store import LocalStore
    from m3rag.stores.milvus import MilvusStore
    from m3rag.stores.qdrant import QdrantStore
    from m3rag.stores.spec import open_store

_LAZY = {
    "Store": "m3rag.stores.base",
    "LocalStore": "m3rag.stores.local.store",
    "QdrantStore": "m3rag.stores.qdrant",
    "MilvusStore": "m3rag.stores.milvus",
    "open_store": "m3rag.stores.spec",
}

__all__ = ["LocalStore", "MilvusStore", "QdrantStore", "Store", "open_store"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'm3rag.stores' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
