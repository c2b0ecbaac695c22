"""Length-sorted, token-budget batching.

Texts are sorted longest first and cut into batches whose padded size ``count * longest`` stays
within a token budget (and whose count stays within ``batch_size``), so a few long texts never
force a huge padded batch and short texts are packed many to a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plan_batches"]


def plan_batches(lengths: Sequence[int] | np.ndarray, *, batch_size: int, batch_tokens: int) -> list[np.ndarray]:
    """Split text indices into batches, longest texts first.

    Returns index arrays (``int64``) into ``lengths``; each batch has at most ``batch_size``
    texts and ``len(batch) * max(lengths[batch]) <= batch_tokens``, except that a single text
    longer than the budget gets a batch of its own.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start, n = 0, len(order)
    while start < n:
        longest = int(lengths[order[start]])  # sorted: the first text of a batch is its longest
        count = max(1, min(batch_size, batch_tokens // max(longest, 1), n - start))
        batches.append(order[start : start + count])
        start += count
    return batches
