"""What a search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["IndexedDocument", "SearchHit"]


@dataclass(frozen=True)
class IndexedDocument:
    """A stored document: its id, text and metadata."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchHit(IndexedDocument):
    """A search result: the document, its final ``score`` and each computed mode's score
    (``scores["dense"]``, ``["sparse"]``, ``["colbert"]`` where that mode was computed)."""

    score: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
