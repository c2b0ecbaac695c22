"""Metadata: what may be stored, and equality filters with JSON's types (``true`` is not ``1``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from m3rag.errors import InputTypeError, InputValueError

__all__ = ["MAX_METADATA_DEPTH", "Filter", "FilterValue", "check_filter", "check_metadata", "matches"]

FilterValue = str | int | float | bool
Filter = Mapping[str, FilterValue]
"""``{field: value}``: a document matches when its metadata has every field with an equal value."""

MAX_METADATA_DEPTH = 32
"""Deepest nesting of lists and dicts allowed in metadata (deeper input is refused, not crashed on)."""


def _same(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: booleans only equal booleans, numbers only numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def check_filter(filter: Mapping[str, Any] | None) -> dict[str, FilterValue] | None:
    """A filter of str keys and scalar (str, int, float, bool) values; ``None``/``{}`` means none."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InputTypeError(f"filter must be a dict of metadata field -> value, got {type(filter).__name__}")
    checked: dict[str, FilterValue] = {}
    for key, value in filter.items():
        if not isinstance(key, str):
            raise InputTypeError(f"filter keys must be str, got {key!r}")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, float) and not math.isfinite(value)):
            raise InputTypeError(f"filter[{key!r}] must be a str, int, finite float or bool, got {type(value).__name__}")
        checked[key] = value
    return checked or None


def matches(metadata: Mapping[str, Any], filter: Filter | None) -> bool:
    return not filter or all(key in metadata and _same(metadata[key], value) for key, value in filter.items())


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of lists/dicts, counted without recursion; stops past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_metadata(meta: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """A JSON round-tripped copy of one document's metadata: str keys, valid Unicode, finite
    numbers, nested at most :data:`MAX_METADATA_DEPTH` deep."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
        raise InputTypeError(f"{where} must be a dict with str keys")
    if _depth(dict(meta), MAX_METADATA_DEPTH) > MAX_METADATA_DEPTH:
        raise InputValueError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    try:
        text = json.dumps(dict(meta), allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # lone surrogates would make every later save fail
        return json.loads(text)  # type: ignore[no-any-return]
    except UnicodeEncodeError as exc:
        raise InputValueError(f"{where} holds text that is not valid Unicode ({exc.reason})") from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputTypeError(f"{where} is not JSON-serialisable: {exc}") from None
