"""A friendly error when a framework extra is not installed."""

from __future__ import annotations

import importlib

__all__ = ["require_extra"]


def require_extra(module: str, extra: str, package: str) -> None:
    """Import ``module`` or raise an ``ImportError`` that says which extra installs it.

    Only a missing ``module`` itself is reported this way; an installed but broken framework
    (one of its own imports failing) raises its original error."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise
        raise ImportError(
            f'{package} needs {module.split(".")[0]}, which is not installed: pip install "m3rag[{extra}]"', name=exc.name
        ) from exc
