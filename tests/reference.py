"""The live reference implementations, imported so that a broken dependency says so.

The parity tests compare m3rag with FlagEmbedding at run time. When a new release of one of
FlagEmbedding's dependencies breaks its import (transformers 5.24 removed a module it imports),
those tests must not look like an m3rag bug: :func:`reference` fails them with a
``DEPENDENCY BREAK`` message that names the package versions and the pin to adjust.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType
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


LEGACY = "FlagEmbedding==1.2.11"
"""The last FlagEmbedding release with ``LLMEmbedder`` (``FlagEmbedding/flag_models.py``); it cannot be
installed beside 1.4.2, so its source distribution is downloaded and that one file is loaded alone."""


def legacy_flag_models(directory: Path) -> ModuleType:
    """FlagEmbedding 1.2.11's ``flag_models.py`` (``LLMEmbedder``, ``FlagModel``) and ``flag_reranker.py``
    (``FlagReranker``) loaded as one standalone module, from ``pip download FlagEmbedding==1.2.11
    --no-deps`` into ``directory`` (kept there between runs). A failed download or import fails the
    test as a DEPENDENCY BREAK."""
    name = "m3rag_reference_flagembedding_1_2_11"
    if name in sys.modules:
        return sys.modules[name]
    directory.mkdir(parents=True, exist_ok=True)
    try:
        archives = sorted(directory.glob("[Ff]lag[Ee]mbedding-1.2.11*"))
        if not archives:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    LEGACY,
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--quiet",
                    "-d",
                    str(directory),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            archives = sorted(directory.glob("[Ff]lag[Ee]mbedding-1.2.11*"))
        module = ModuleType(name)
        module.__file__ = str(archives[0])
        for member in ("FlagEmbedding/flag_models.py", "FlagEmbedding/flag_reranker.py"):
            exec(compile(_read_member(archives[0], member), f"{archives[0]}!{member}", "exec"), module.__dict__)
    except Exception as exc:
        detail = exc.stderr.strip()[-500:] if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else ""
        pytest.fail(
            f"DEPENDENCY BREAK, not an m3rag bug: the reference {LEGACY} (flag_models.py, flag_reranker.py) could not be "
            f"downloaded or loaded ({type(exc).__name__}: {exc} {detail}). PyPI must be reachable (pip download "
            f"{LEGACY} --no-deps). Installed: {versions()}.",
            pytrace=False,
        )
    sys.modules[name] = module
    return module


def _read_member(archive: Path, member: str) -> str:
    """A file of an sdist (``.tar.gz``) or wheel (``.whl``), by its path inside the package."""
    if archive.suffix == ".whl" or archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            path = next(n for n in zf.namelist() if n.endswith(member))
            return zf.read(path).decode("utf-8")
    with tarfile.open(archive) as tf:
        path = next(n for n in tf.getnames() if n.endswith(member))
        handle = tf.extractfile(path)
        if handle is None:
            raise FileNotFoundError(f"{member} in {archive}")
        return handle.read().decode("utf-8")
