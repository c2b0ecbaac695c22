"""Random BERT checkpoints in the BAAI/bge-*-en-v1.5 layout (also BAAI/llm-embedder's), with a
WordPiece tokenizer, written from plain data (JSON, safetensors) like the bge-m3 builder.

The WordPiece vocabulary is package data (``data/bert_vocab.txt``, bert-base-uncased's special layout
with pieces learned from ``SAMPLE_TEXTS``): the ``tokenizers`` WordPiece trainer breaks ties through
randomly seeded hash maps, so training at build time would not give the same file twice.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Final, Literal

import torch
from safetensors.torch import save_file

from m3rag.errors import InputValueError
from m3rag.testing.checkpoint import CheckpointPreset, check_seed, encoder_tensor_specs, random_tensor, resolve_shape, staged
from m3rag.testing.tokenizer import json_bytes

__all__ = [
    "BERT_CHECKPOINT_FILES",
    "BERT_MAX_POSITION_EMBEDDINGS",
    "BERT_TOKENIZER_FILES",
    "bert_config",
    "bert_tokenizer_files",
    "bert_vocab",
    "bert_weights",
    "build_bert_checkpoint",
]

BERT_MAX_POSITION_EMBEDDINGS: Final[int] = 512
BERT_TOKENIZER_FILES: Final[tuple[str, ...]] = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
BERT_CHECKPOINT_FILES: Final[tuple[str, ...]] = (
    "config.json",
    "model.safetensors",
    *BERT_TOKENIZER_FILES,
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
"""The files `build_bert_checkpoint` writes: the names a BAAI/bge-small-en-v1.5 snapshot uses
(the last four are sentence-transformers' files; FlagEmbedding ignores them, m3rag reads the pooling)."""

_SPECIALS: Final[Mapping[str, int]] = MappingProxyType({"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103})


@functools.lru_cache(maxsize=1)
def bert_vocab() -> tuple[str, ...]:
    """The WordPiece vocabulary: [PAD]=0, [unused0..98], [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103,
    then the learned pieces (whole words, then ``##`` pieces, each by length and text)."""
    vocab = tuple(files("m3rag.testing").joinpath("data/bert_vocab.txt").read_text(encoding="utf-8").splitlines())
    if any(vocab[i] != token for token, i in _SPECIALS.items()) or len(set(vocab)) != len(vocab):
        raise RuntimeError("m3rag/testing/data/bert_vocab.txt is damaged: special tokens out of place or repeated pieces")
    return vocab


def _added_tokens() -> list[dict[str, Any]]:
    return [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for t, i in sorted(_SPECIALS.items(), key=lambda kv: kv[1])
    ]


@functools.lru_cache(maxsize=1)
def bert_tokenizer_files() -> Mapping[str, bytes]:
    """``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` as the
    bge-*-en-v1.5 snapshots hold them (uncased BERT: lowercase, accents kept as the config says).

    ``tokenizer.json`` is the pipeline transformers 4 wrote for ``BertTokenizerFast`` (BertNormalizer,
    BertPreTokenizer, WordPiece, ``[CLS] A [SEP] B [SEP]`` with segment B typed 1); transformers 5 takes
    the vocabulary from it and rebuilds the rest from ``tokenizer_config.json``, to the same ids.
    ``truncation`` and ``padding`` stay null: transformers 5 would turn a baked-in truncation into the
    tokenizer's default length.
    """
    vocab = bert_vocab()
    added = _added_tokens()

    def special(token: str, type_id: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": token, "type_id": type_id}}

    def sequence(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0)],
            "pair": [special("[CLS]", 0), sequence("A", 0), special("[SEP]", 0), sequence("B", 1), special("[SEP]", 1)],
            "special_tokens": {t: {"id": t, "ids": [_SPECIALS[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {t: i for i, t in enumerate(vocab)},
        },
    }
    tokenizer_config = {
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added},
        "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]",
        "do_basic_tokenize": True,
        "do_lower_case": True,
        "mask_token": "[MASK]",
        "model_max_length": BERT_MAX_POSITION_EMBEDDINGS,
        "never_split": None,
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]",
    }
    special_tokens_map = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"}
    return MappingProxyType(
        {
            "vocab.txt": ("\n".join(vocab) + "\n").encode("utf-8"),
            "tokenizer.json": json_bytes(tokenizer_json),
            "tokenizer_config.json": json_bytes(tokenizer_config),
            "special_tokens_map.json": json_bytes(special_tokens_map),
        }
    )


def bert_config(shape: CheckpointPreset, architecture: str) -> bytes:
    """bge-small-en-v1.5's config.json (transformers 4.30 era) with this checkpoint's sizes."""
    return json_bytes(
        {
            "architectures": [architecture],
            "attention_probs_dropout_prob": 0.1,
            "classifier_dropout": None,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "hidden_size": shape.hidden_size,
            "id2label": {"0": "LABEL_0"},
            "initializer_range": 0.02,
            "intermediate_size": shape.intermediate_size,
            "label2id": {"LABEL_0": 0},
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": BERT_MAX_POSITION_EMBEDDINGS,
            "model_type": "bert",
            "num_attention_heads": shape.num_attention_heads,
            "num_hidden_layers": shape.num_hidden_layers,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32",
            "transformers_version": "4.30.0",
            "type_vocab_size": 2,
            "use_cache": True,
            "vocab_size": len(bert_vocab()),
        }
    )


def bert_weights(shape: CheckpointPreset, generator: torch.Generator, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """A ``BertModel``'s tensors (pooler included) drawn from ``generator``; keys start with ``prefix``."""
    padding = {"word": 0, "position": None}  # BERT pads words with id 0; its position table has no padding row
    return {
        f"{prefix}{key}": random_tensor(dims, kind, generator, padding_idx=padding.get(kind))
        for key, dims, kind in encoder_tensor_specs(
            shape, len(bert_vocab()), positions=BERT_MAX_POSITION_EMBEDDINGS, type_vocab_size=2, token_type_kind="segment"
        )
    }


def build_bert_checkpoint(
    directory: str | os.PathLike[str],
    *,
    preset: Literal["tiny", "wide"] = "tiny",
    seed: int = 0,
    num_layers: int | None = None,
    pooling: Literal["cls", "mean"] = "cls",
    exist_ok: bool = False,
) -> pathlib.Path:
    """Write a random BERT embedder in the BAAI/bge-*-en-v1.5 layout into `directory`; returns its absolute path.

    Writes exactly `BERT_CHECKPOINT_FILES`: a ``bert`` config (``BertModel``, 512 positions, two token
    types), fp32 weights in ``model.safetensors`` (``BertModel`` keys without prefix, pooler included, as
    the BAAI files), the WordPiece tokenizer files of `bert_tokenizer_files`, and sentence-transformers'
    ``modules.json`` / ``1_Pooling/config.json`` declaring `pooling` ("cls" as every bge model; "mean"
    for e5/gte-style checkpoints). The same arguments give byte-identical files; global RNG state is
    untouched. Directory rules as `build_checkpoint` (`exist_ok` replaces the files above only).
    """
    shape = resolve_shape(preset, num_layers)
    check_seed(seed)
    if pooling not in ("cls", "mean"):
        raise InputValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    target = pathlib.Path(directory).expanduser().absolute()
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    with staged(target, BERT_CHECKPOINT_FILES, exist_ok=exist_ok) as staging:
        write_bert_tokenizer(staging)
        (staging / "config.json").write_bytes(bert_config(shape, "BertModel"))
        save_file(bert_weights(shape, generator), str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "modules.json").write_bytes(
            json_bytes(
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
                ]
            )
        )
        sentence_bert = {"max_seq_length": BERT_MAX_POSITION_EMBEDDINGS, "do_lower_case": True}
        (staging / "sentence_bert_config.json").write_bytes(json_bytes(sentence_bert))
        (staging / "config_sentence_transformers.json").write_bytes(
            json_bytes({"__version__": {"sentence_transformers": "2.2.2", "transformers": "4.30.0", "pytorch": "1.13.1"}})
        )
        (staging / "1_Pooling").mkdir()
        (staging / "1_Pooling" / "config.json").write_bytes(
            json_bytes(
                {
                    "word_embedding_dimension": shape.hidden_size,
                    "pooling_mode_cls_token": pooling == "cls",
                    "pooling_mode_mean_tokens": pooling == "mean",
                    "pooling_mode_max_tokens": False,
                    "pooling_mode_mean_sqrt_len_tokens": False,
                }
            )
        )
    return target


def write_bert_tokenizer(directory: pathlib.Path) -> None:
    """Write the four WordPiece tokenizer files into ``directory``."""
    for name, data in bert_tokenizer_files().items():
        (directory / name).write_bytes(data)
