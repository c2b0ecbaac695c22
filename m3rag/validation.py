"""Argument checks shared by the core and the adapters; each error names what was wrong."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from m3rag.errors import InputTypeError, InputValueError

__all__ = ["check_pairs", "check_positive_int", "check_str", "check_texts"]


def check_texts(texts: object, name: str = "texts") -> tuple[list[str], bool]:
    """``(list of str, was a single str)``; ``None``, bytes, mappings and non-str items are errors."""
    if isinstance(texts, str):
        return [texts], True
    if texts is None or isinstance(texts, bytes | bytearray | Mapping) or not isinstance(texts, Iterable):
        raise InputTypeError(f"{name} must be a str or a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InputTypeError(f"{name}[{i}] is {type(text).__name__}, not str")
    return items, False


def check_positive_int(value: Any, name: str, *, minimum: int = 1, optional: bool = False) -> Any:
    """``value`` if it is an int ``>= minimum`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InputValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check_pairs(pairs: object, name: str = "sentence_pairs") -> tuple[list[tuple[str, str]], bool]:
    """``(list of (str, str), was a single pair)``: FlagEmbedding's pair argument, one pair or many."""
    if isinstance(pairs, list | tuple) and len(pairs) == 2 and all(isinstance(s, str) for s in pairs):
        return [(pairs[0], pairs[1])], True
    if pairs is None or isinstance(pairs, str | bytes | bytearray | Mapping) or not isinstance(pairs, Iterable):
        raise InputTypeError(f"{name} must be a (query, passage) pair or a sequence of pairs, got {type(pairs).__name__}")
    checked = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str | bytes) or not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InputTypeError(f"{name}[{i}] must be a (query, passage) pair of str")
        for text in pair:
            if not isinstance(text, str):
                raise InputTypeError(f"{name}[{i}] holds {type(text).__name__}, not str")
        checked.append((pair[0], pair[1]))
    return checked, False
