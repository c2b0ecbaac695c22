"""A small multilingual corpus written for this project (no dataset text): the tokenizer's training
data, the texts ``checkpoint_quality`` encodes, and sample inputs for tests and benchmarks. All texts
are distinct and none ends in whitespace. Stored as ``data/corpus.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType
from typing import Final

__all__ = ["SAMPLE_TEXTS", "SAMPLE_TEXTS_BY_LANGUAGE"]

SAMPLE_TEXTS_BY_LANGUAGE: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        lang: tuple(texts)
        for lang, texts in json.loads(files("m3rag.testing").joinpath("data/corpus.json").read_text(encoding="utf-8")).items()
    }
)
"""Sample texts grouped by language ("en", "fr", "de", "es", "zh", "ja", "ru", "ar", "code"), 25 each."""

SAMPLE_TEXTS: Final[tuple[str, ...]] = tuple(text for texts in SAMPLE_TEXTS_BY_LANGUAGE.values() for text in texts)
"""All sample texts, in language order (225 distinct texts)."""
