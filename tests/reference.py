"""The live reference implementations, imported so that a broken dependency says so.

The parity tests compare m3rag with FlagEmbedding at run time. When a new release of one of
FlagEmbedding's dependencies breaks its import (transformers 5.24 removed a module it imports),
those tests must not look like an m3rag bug: :func:`reference` fails them with a
``DEPENDENCY BREAK`` message that names the package versions and the pin to adjust.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

import pytest

PINNED = "FlagEmbedding"
"""The reference package; its pin and the pins it needs are in pyproject.toml's ``test`` extra."""

WATCHED = ("FlagEmbedding", "transformers", "tokenizers", "torch", "peft", "sentence-transformers", "accelerate")
"""Packages whose releases have broken, or could break, the reference's import."""


def versions(names: tuple[str, ...] = WATCHED) -> str:
    """``name==version`` of each installed package (``name: not installed`` otherwise)."""
    found = []
    for name in names:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name}: not installed")
    return ", ".join(found)


def reference(module: str, attribute: str) -> Any:
    """``module.attribute`` of the reference, or a test failure that says it is a dependency break."""
    try:
        return getattr(importlib.import_module(module), attribute)
    except Exception as exc:  # any import-time failure of the reference is a dependency problem
        pytest.fail(
            f"DEPENDENCY BREAK, not an m3rag bug: the live reference {module}.{attribute} cannot be "
            f"imported ({type(exc).__name__}: {exc}). Installed: {versions()}. A new release of one of "
            f"these broke the reference; adjust the pins in pyproject.toml's 'test' extra.",
            pytrace=False,
        )
