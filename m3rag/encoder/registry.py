"""Which model to load by default, and the process-wide instances of every model kind.

Pure Python (no torch import): the CLI and the framework adapters read :func:`default_model`
without loading a model.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Hashable, Iterable
from types import MappingProxyType
from typing import Any, Literal, TypeVar

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODELS",
    "MODEL_ENV",
    "REGISTRY",
    "ModelKind",
    "SharedRegistry",
    "default_model",
    "looks_like_hub_id",
    "model_key",
]

DEFAULT_MODEL = "BAAI/bge-m3"
"""The model used when none is named and ``$M3RAG_MODEL`` is not set."""
MODEL_ENV = "M3RAG_MODEL"

ModelKind = Literal["m3", "dense", "llm-embedder", "reranker"]
DEFAULT_MODELS: MappingProxyType[str, tuple[str, str]] = MappingProxyType(
    {
        "m3": (MODEL_ENV, DEFAULT_MODEL),
        "dense": ("M3RAG_DENSE_MODEL", "BAAI/bge-small-en-v1.5"),
        "llm-embedder": ("M3RAG_LLM_EMBEDDER_MODEL", "BAAI/llm-embedder"),
        "reranker": ("M3RAG_RERANKER_MODEL", "BAAI/bge-reranker-v2-m3"),
    }
)
"""Per model kind: the environment variable that overrides the default, and the default model."""

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

T = TypeVar("T")


def default_model(kind: ModelKind = "m3") -> str:
    """The model a component of ``kind`` loads when none is named: the kind's environment variable
    if set (and not empty), else its default (:data:`DEFAULT_MODELS`). For ``"m3"``:
    ``$M3RAG_MODEL`` or ``BAAI/bge-m3``; ``"dense"``: ``$M3RAG_DENSE_MODEL`` or
    ``BAAI/bge-small-en-v1.5``; ``"llm-embedder"``: ``$M3RAG_LLM_EMBEDDER_MODEL`` or
    ``BAAI/llm-embedder``; ``"reranker"``: ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``."""
    try:
        env, default = DEFAULT_MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(DEFAULT_MODELS)}") from None
    return os.environ.get(env) or default


def looks_like_hub_id(name: str) -> bool:
    """True for ``"org/name"`` strings that are not an existing local path."""
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def model_key(name: str | os.PathLike[str] | None) -> str:
    """One key per model: the hub id as written, or the real path of a local directory."""
    raw = os.fspath(name) if name is not None else default_model()
    if raw.startswith(("http://", "https://")) or looks_like_hub_id(raw):
        return raw.rstrip("/") if raw.startswith("http") else raw
    return os.path.realpath(os.path.expanduser(raw))


class SharedRegistry:
    """Process-wide instances by key; each key is built once, even when many threads ask at once."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], T], *, reuse: Iterable[Hashable] = ()) -> T:
        """The instance under ``key`` (or under the first of ``reuse`` that exists); else ``build()``."""
        with self._lock:
            for candidate in (*reuse, key):
                if candidate in self._items:
                    return self._items[candidate]  # type: ignore[no-any-return]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]  # type: ignore[no-any-return]
            item = build()
            with self._lock:
                self._items[key] = item
            return item

    def clear(self, kind: type | None = None) -> None:
        """Forget every instance (of class ``kind`` only, if given); memory is freed once unused."""
        with self._lock:
            for key in [k for k, v in self._items.items() if kind is None or isinstance(v, kind)]:
                del self._items[key]
                self._key_locks.pop(key, None)


REGISTRY = SharedRegistry()
"""The one registry: every model kind's ``.shared()`` goes through it."""
