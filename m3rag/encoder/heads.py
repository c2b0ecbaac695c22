"""From the last hidden state of one padded batch to M3's three representations, vectorised.

Every function takes ``hidden`` ``[b, L, H]`` (right-padded) and returns float32 tensors on the
same device; no Python loop runs over tokens or texts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["colbert_vectors", "dense_vectors", "lexical_weights"]


def dense_vectors(hidden: torch.Tensor) -> torch.Tensor:
    """``[b, H]``: the L2-normalised hidden state of the first token (``<s>``, i.e. [CLS])."""
    return F.normalize(hidden[:, 0].float(), dim=-1)


def lexical_weights(
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sparse_linear: torch.nn.Linear,
    dropped_ids: torch.Tensor,
    vocab_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-text ``{token_id: max weight}`` as COO triplets ``(row, token_id, weight)``.

    ``weight = relu(sparse_linear(h))`` per position; positions that are padding, whose id is in
    ``dropped_ids`` (``<s> </s> <pad> <unk>``) or whose weight is ``<= 0`` are dropped; a token id
    repeated in a text keeps its maximum. Triplets come sorted by ``(row, token_id)``, so they
    are CSR-ready. Dtypes: int64, int64, float32.
    """
    weights = torch.relu(sparse_linear(hidden)).squeeze(-1).float()
    keep = attention_mask.bool() & (weights > 0) & ~torch.isin(input_ids, dropped_ids)
    rows, cols = keep.nonzero(as_tuple=True)
    keys = rows * vocab_size + input_ids[rows, cols]
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    best = torch.zeros(unique_keys.shape[0], dtype=torch.float32, device=weights.device)
    best.scatter_reduce_(0, inverse, weights[rows, cols], reduce="amax", include_self=False)
    return unique_keys // vocab_size, unique_keys % vocab_size, best


def colbert_vectors(
    hidden: torch.Tensor, attention_mask: torch.Tensor, colbert_linear: torch.nn.Linear
) -> tuple[torch.Tensor, torch.Tensor]:
    """All texts' ColBERT vectors stacked, and how many rows each text has.

    Rows are ``normalize(colbert_linear(h_t))`` for every real token after ``<s>`` (``</s>``
    included), in text then position order: ``[sum_i (len_i - 1), C]`` float32 and ``[b]`` int64.
    Padding positions are never projected.
    """
    mask = attention_mask[:, 1:].bool()
    vectors = colbert_linear(hidden[:, 1:][mask])
    return F.normalize(vectors.float(), dim=-1), mask.sum(dim=1)
