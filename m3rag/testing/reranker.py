"""Random cross-encoder checkpoints (one-label sequence classification), written from plain data.

- ``base="xlm-roberta"``: the BAAI/bge-reranker-v2-m3 layout (also bge-reranker-base/large):
  ``XLMRobertaForSequenceClassification``, keys ``roberta.*`` without a pooler, a two-layer head
  ``classifier.dense`` ``[H, H]`` and ``classifier.out_proj`` ``[1, H]``, 8194 positions, bge-m3's
  XLM-R tokenizer (the one of `build_checkpoint`).
- ``base="bert"``: ``BertForSequenceClassification`` (keys ``bert.*`` with the pooler,
  ``classifier`` ``[1, H]``) on the WordPiece tokenizer of `build_bert_checkpoint`. No BAAI reranker is
  a BERT; this one exercises segment B's token type 1, which the XLM-R layout does not have.
"""

from __future__ import annotations

import os
import pathlib
from typing import Final, Literal

import torch
from safetensors.torch import save_file

from m3rag.errors import InputValueError
from m3rag.testing.bert import BERT_TOKENIZER_FILES, bert_config, bert_weights, write_bert_tokenizer
from m3rag.testing.checkpoint import (
    MAX_POSITION_EMBEDDINGS,
    CheckpointPreset,
    check_seed,
    encoder_tensor_specs,
    random_tensor,
    resolve_shape,
    staged,
)
from m3rag.testing.tokenizer import XLMR_FILES, json_bytes, xlmr_tokenizer_files, xlmr_vocab

__all__ = ["RERANKER_CHECKPOINT_FILES", "build_reranker_checkpoint"]

RERANKER_CHECKPOINT_FILES: Final[dict[str, tuple[str, ...]]] = {
    "xlm-roberta": ("config.json", "model.safetensors", *XLMR_FILES),
    "bert": ("config.json", "model.safetensors", *BERT_TOKENIZER_FILES),
}
"""The files `build_reranker_checkpoint` writes, by base (those of a bge-reranker-v2-m3 snapshot for XLM-R)."""


def build_reranker_checkpoint(
    directory: str | os.PathLike[str],
    *,
    base: Literal["xlm-roberta", "bert"] = "xlm-roberta",
    preset: Literal["tiny", "wide"] = "tiny",
    seed: int = 0,
    num_layers: int | None = None,
    exist_ok: bool = False,
) -> pathlib.Path:
    """Write a random one-label cross-encoder into `directory` and return its absolute path.

    ``num_labels`` is 1 (``id2label {"0": "LABEL_0"}``), so the model's output is one relevance logit
    per (query, passage) pair. Weights are fp32 uniform draws scaled as `build_checkpoint`'s (input
    sensitive: scores differ clearly between pairs); the same arguments give byte-identical files and
    global RNG state is untouched. Directory rules as `build_checkpoint`.
    """
    if base not in RERANKER_CHECKPOINT_FILES:
        raise InputValueError(f"unknown reranker base {base!r}; expected 'xlm-roberta' or 'bert'")
    shape = resolve_shape(preset, num_layers)
    check_seed(seed)
    target = pathlib.Path(directory).expanduser().absolute()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    h = shape.hidden_size
    with staged(target, RERANKER_CHECKPOINT_FILES[base], exist_ok=exist_ok) as staging:
        if base == "bert":
            write_bert_tokenizer(staging)
            config = bert_config(shape, "BertForSequenceClassification")
            weights = bert_weights(shape, generator, prefix="bert.")
            weights["classifier.weight"] = random_tensor((1, h), "head", generator)
            weights["classifier.bias"] = random_tensor((1,), "bias", generator)
        else:
            for name, data in xlmr_tokenizer_files().items():
                (staging / name).write_bytes(data)
            vocab_size = len(xlmr_vocab())
            config = _xlmr_config(shape, vocab_size)
            weights = {
                f"roberta.{key}": random_tensor(dims, kind, generator)
                for key, dims, kind in encoder_tensor_specs(shape, vocab_size, pooler=False)
            }
            weights["classifier.dense.weight"] = random_tensor((h, h), "head", generator)
            weights["classifier.dense.bias"] = random_tensor((h,), "bias", generator)
            weights["classifier.out_proj.weight"] = random_tensor((1, h), "head", generator)
            weights["classifier.out_proj.bias"] = random_tensor((1,), "bias", generator)
        (staging / "config.json").write_bytes(config)
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
    return target


def _xlmr_config(shape: CheckpointPreset, vocab_size: int) -> bytes:
    """bge-reranker-v2-m3's config.json with this checkpoint's sizes."""
    return json_bytes(
        {
            "architectures": ["XLMRobertaForSequenceClassification"],
            "attention_probs_dropout_prob": 0.1,
            "bos_token_id": 0,
            "classifier_dropout": None,
            "eos_token_id": 2,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": shape.hidden_size,
            "id2label": {"0": "LABEL_0"},
            "initializer_range": 0.02,
            "intermediate_size": shape.intermediate_size,
            "label2id": {"LABEL_0": 0},
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
            "model_type": "xlm-roberta",
            "num_attention_heads": shape.num_attention_heads,
            "num_hidden_layers": shape.num_hidden_layers,
            "output_past": True,
            "pad_token_id": 1,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
            "transformers_version": "4.38.1",
            "type_vocab_size": 1,
            "use_cache": True,
            "vocab_size": vocab_size,
        }
    )
