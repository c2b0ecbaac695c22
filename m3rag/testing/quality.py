"""How input-sensitive a checkpoint is: the measure behind the test checkpoints' init scales."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import TypedDict

import torch

from m3rag.errors import InputValueError
from m3rag.testing.corpus import SAMPLE_TEXTS

__all__ = ["CheckpointQuality", "checkpoint_quality"]


class CheckpointQuality(TypedDict):
    """What `checkpoint_quality` measured (cosines are of L2-normalised [CLS] vectors, fp32)."""

    num_texts: int  # distinct texts encoded
    num_tokens: int  # real tokens other than <s> </s> <pad> <unk>
    mean_pairwise_cosine: float  # over all pairs of distinct texts; ~1.0 means input-blind
    max_pairwise_cosine: float
    mean_truncated_cosine: float  # text vs. its first 80 % (by characters): similar texts stay closer
    sparse_positive_share: float  # share of `num_tokens` with relu(sparse_linear(h)) > 0
    unk_share: float  # share of non-special tokens that are <unk> (0.0 on the built-in corpus)
    all_finite: bool  # no inf/NaN in hidden states, dense, sparse or ColBERT outputs


def checkpoint_quality(
    directory: str | os.PathLike[str],
    *,
    texts: Sequence[str] = SAMPLE_TEXTS,
    batch_size: int = 32,
) -> CheckpointQuality:
    """Measure how input-sensitive a checkpoint is, with a plain transformers forward plus the two heads.

    Loads `directory` with `AutoTokenizer` / `AutoModel` (fp32, CPU, eval) and the heads with
    `torch.load(weights_only=True)`, encodes the distinct `texts` (at least 2; truncated at 512 tokens)
    and returns `CheckpointQuality`. Works on any bge-m3-layout directory, not only built ones. Global
    RNG state is left as it was.
    """
    from transformers import AutoModel, AutoTokenizer  # heavy import, only needed here

    unique = list(dict.fromkeys(texts))
    if len(unique) < 2:
        raise InputValueError("checkpoint_quality needs at least 2 distinct texts")
    if batch_size < 1:
        raise InputValueError(f"batch_size must be >= 1, got {batch_size}")
    path = pathlib.Path(directory)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).float().eval()
        heads = {
            name: torch.load(path / f"{name}.pt", map_location="cpu", weights_only=True) for name in ("colbert_linear", "sparse_linear")
        }
        specials = torch.tensor([tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id])
        unk_id = tokenizer.unk_token_id

        def encode(batch: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
            enc = tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].bool()
            sparse = torch.relu(hidden @ heads["sparse_linear"]["weight"].T + heads["sparse_linear"]["bias"])
            colbert = hidden[:, 1:] @ heads["colbert_linear"]["weight"].T + heads["colbert_linear"]["bias"]
            finite = bool(
                torch.isfinite(hidden[mask]).all() and torch.isfinite(sparse[mask]).all() and torch.isfinite(colbert[mask[:, 1:]]).all()
            )
            dense = torch.nn.functional.normalize(hidden[:, 0], dim=-1)
            finite = finite and bool(torch.isfinite(dense).all())
            return dense, enc["input_ids"][mask], sparse.squeeze(-1)[mask], finite

        dense_parts, id_parts, weight_parts, finite = [], [], [], True
        for batch in _batches(unique, batch_size):
            dense, ids, weights, ok = encode(batch)
            dense_parts.append(dense)
            id_parts.append(ids)
            weight_parts.append(weights)
            finite = finite and ok
        truncated_parts = []
        for batch in _batches([t[: max(1, int(len(t) * 0.8))] for t in unique], batch_size):
            dense, _, _, ok = encode(batch)
            truncated_parts.append(dense)
            finite = finite and ok

    dense = torch.cat(dense_parts)
    ids = torch.cat(id_parts)
    weights = torch.cat(weight_parts)
    cosine = dense @ dense.T
    upper = torch.triu_indices(len(unique), len(unique), offset=1)
    pairwise = cosine[upper[0], upper[1]]
    non_special = ~torch.isin(ids, specials)  # real tokens, <unk> included
    regular = non_special & (ids != unk_id)  # the tokens FlagEmbedding can give a lexical weight
    return CheckpointQuality(
        num_texts=len(unique),
        num_tokens=int(regular.sum()),
        mean_pairwise_cosine=float(pairwise.mean()),
        max_pairwise_cosine=float(pairwise.max()),
        mean_truncated_cosine=float((dense * torch.cat(truncated_parts)).sum(-1).mean()),
        sparse_positive_share=float((weights[regular] > 0).float().mean()) if bool(regular.any()) else 0.0,
        unk_share=float((ids[non_special] == unk_id).float().mean()) if bool(non_special.any()) else 0.0,
        all_finite=finite,
    )


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
