"""Telling callers that inputs were cut at ``max_length`` (no torch: the remote encoder uses it too)."""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np

__all__ = ["TruncationWarning", "warn_truncated"]


class TruncationWarning(UserWarning):
    """Some inputs were longer than ``max_length`` tokens and were truncated."""


def _caller_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` that points at the first frame outside m3rag."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package_dir):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def warn_truncated(truncated: np.ndarray, max_length: int, what: str = "texts") -> None:
    """A :class:`TruncationWarning` pointing at the caller's line, if any of ``truncated`` is set."""
    if truncated.any():
        warnings.warn(
            f"{int(truncated.sum())} of {len(truncated)} {what} were longer than max_length={max_length} tokens and were truncated",
            TruncationWarning,
            stacklevel=_caller_stacklevel(),
        )
