"""The seam between :class:`~m3rag.M3Index` and where its documents live.

A store keeps documents (id, text, metadata) with their dense, sparse and (optionally) ColBERT
vectors, and executes whole :class:`~m3rag.index.plan.SearchPlan`\\ s: first stage, fusion and
rerank, server-side in one request where the engine can. The index validates arguments, encodes
texts and queries, and applies id policy; a store only stores and searches, with the same meaning
on every store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from m3rag.encoder.output import M3Output
from m3rag.errors import ModelMismatchError
from m3rag.index.hits import IndexedDocument, SearchHit
from m3rag.index.plan import EncodeColbert, SearchPlan

__all__ = ["IDENTITY_KEYS", "EncodeDense", "Store", "check_identity"]

IDENTITY_KEYS = ("dim", "colbert_dim", "vocab_size", "fingerprint")
"""The parts of an encoder's identity that must match the store's (the name may differ)."""

EncodeDense = Callable[[list[str]], np.ndarray]
"""Encode passages' dense vectors ``float32 [n, d]`` (to verify an older store's model)."""


def check_identity(saved: Mapping[str, Any], identity: Mapping[str, Any], where: str) -> None:
    """:class:`ModelMismatchError` naming every differing part unless ``saved`` is ``identity``."""
    differing = [k for k in IDENTITY_KEYS if saved.get(k) != identity.get(k)]
    if differing:
        detail = ", ".join(f"{k}: store {saved.get(k)!r} vs encoder {identity.get(k)!r}" for k in differing)
        raise ModelMismatchError(
            f"{where} was built with model {saved.get('name')!r}, not with the encoder's {identity.get('name')!r} ({detail})"
        )


class Store(ABC):
    """Where an :class:`~m3rag.M3Index` keeps documents and runs search plans."""

    kind: ClassVar[str]
    """``"local"``, ``"qdrant"``, ``"milvus"``."""
    keeps_colbert: bool
    """Whether ColBERT vectors are stored (else the index recomputes them from the text to rerank)."""
    settings: dict[str, Any]
    """Index settings recorded with the store (``max_length``); restored when it is reopened."""

    @abstractmethod
    def bind(self, identity: Mapping[str, Any], *, encode_dense: EncodeDense | None = None) -> None:
        """Attach the store to the model: record ``identity`` in a new store, or check that an
        existing one was built by the same model (:class:`~m3rag.ModelMismatchError`)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ids(self) -> list[str]:
        """Every document id (the local store: in insertion order)."""

    @abstractmethod
    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""

    @abstractmethod
    def write(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]], vectors: M3Output) -> None:
        """Store documents (replacing stored ones of the same id). ``vectors`` holds dense and
        sparse outputs, and ColBERT ones when :attr:`keeps_colbert`."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> None:
        """Remove stored documents (the index has checked that they exist)."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[IndexedDocument]:
        """Stored documents in the order of ``ids`` (the index has checked that they exist)."""

    @abstractmethod
    def search(self, plan: SearchPlan, queries: M3Output, encode_colbert: EncodeColbert) -> list[list[SearchHit]]:
        """Run ``plan`` for each query (encoded with ``plan.heads``); ``encode_colbert`` recomputes
        passages' ColBERT vectors when the store keeps none."""

    @abstractmethod
    def export(self, batch_size: int = 256) -> Iterator[tuple[list[str], list[str], list[dict[str, Any]], M3Output]]:
        """Every document with its stored vectors, in batches: ``(ids, texts, metadatas, vectors)``."""

    def recorded_model(self) -> str | None:
        """The name of the model an existing store was built with (``None`` for a new one), read
        without binding: the command line loads that model when ``--model`` is not given."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections or files."""

    def describe(self) -> str:
        return self.kind
