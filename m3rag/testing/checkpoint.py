"""Random checkpoints in the exact BAAI/bge-m3 layout, written from plain data (JSON, safetensors,
``torch.save``), not through transformers' save methods, so the files have bge-m3's shape whatever
transformers version is installed."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Final, Literal

import torch
from safetensors.torch import save_file

from m3rag.errors import InputValueError
from m3rag.testing.tokenizer import json_bytes, xlmr_tokenizer_files, xlmr_vocab

__all__ = [
    "CHECKPOINT_FILES",
    "MAX_POSITION_EMBEDDINGS",
    "PRESETS",
    "CheckpointPreset",
    "build_checkpoint",
    "check_seed",
    "check_target",
    "encoder_tensor_specs",
    "random_tensor",
    "resolve_shape",
    "staged",
    "uniform_scale",
]

CHECKPOINT_FILES: Final[tuple[str, ...]] = (
    "config.json",
    "model.safetensors",
    "colbert_linear.pt",
    "sparse_linear.pt",
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
"""The files `build_checkpoint` writes: the names a BAAI/bge-m3 snapshot uses."""


@dataclasses.dataclass(frozen=True)
class CheckpointPreset:
    """Encoder shape of a preset (the vocabulary always comes from the built-in tokenizer)."""

    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    num_hidden_layers: int


PRESETS: Final[Mapping[str, CheckpointPreset]] = MappingProxyType(
    {
        # Fast enough to build once per test session.
        "tiny": CheckpointPreset(hidden_size=64, num_attention_heads=4, intermediate_size=256, num_hidden_layers=2),
        # bge-m3's width (its per-layer cost) with 4 layers instead of 24, for benchmarks.
        "wide": CheckpointPreset(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, num_hidden_layers=4),
    }
)
"""Named encoder shapes for `build_checkpoint`."""

MAX_POSITION_EMBEDDINGS: Final[int] = 8194  # as bge-m3: 8192 tokens + the padding offset of 2
MODEL_MAX_LENGTH: Final[int] = 8192

# Init scales. Matrices get std = gain / sqrt(fan_in), so presets of any width behave alike; embeddings
# and vectors get plain stds; every draw is uniform with that std (see `random_tensor`). HF's default
# (std 0.02 everywhere) leaves attention uniform and the residual stream equal to each token's own
# embedding, so every text gets almost the same [CLS] vector (mean pairwise cosine 0.99998 on
# SAMPLE_TEXTS). These gains were chosen by measuring `checkpoint_quality` over many seeds of both presets.
_WORD_EMBEDDING_STD: Final[float] = 1.0
_POSITION_EMBEDDING_STD: Final[float] = 0.5  # smaller than words: positions are shared by every text
_TOKEN_TYPE_EMBEDDING_STD: Final[float] = 0.02  # added to every position: pure common mode
_QUERY_KEY_GAIN: Final[float] = 1.5  # attention logits of std ~ gain**2: content-dependent attention
_VALUE_OUTPUT_GAIN: Final[float] = 1.25  # attention output comparable to the residual
_FEED_FORWARD_GAIN: Final[float] = 1.25
_POOLER_GAIN: Final[float] = 1.0
_COLBERT_GAIN: Final[float] = 1.0
_SPARSE_GAIN: Final[float] = 0.25  # lexical weights mostly in [0, 1], as bge-m3's
_HEAD_GAIN: Final[float] = 1.0  # a cross-encoder's classifier layers
_SEGMENT_EMBEDDING_STD: Final[float] = 0.5  # BERT's two segments: segment B must visibly matter
_BIAS_STD: Final[float] = 0.02  # non-zero, so an implementation that drops a bias is caught
_LAYER_NORM_WEIGHT_STD: Final[float] = 0.05  # around 1
_LAYER_NORM_BIAS_STD: Final[float] = 0.02


def build_checkpoint(
    directory: str | os.PathLike[str],
    *,
    preset: Literal["tiny", "wide"] = "tiny",
    seed: int = 0,
    num_layers: int | None = None,
    exist_ok: bool = False,
) -> pathlib.Path:
    """Write a random checkpoint in the BAAI/bge-m3 layout into `directory` and return its absolute path.

    Writes exactly `CHECKPOINT_FILES`: an `xlm-roberta` `config.json` (8194 positions, so 8192-token
    inputs work), fp32 encoder weights in `model.safetensors` (keys without a `roberta.` prefix, pooler
    included), `colbert_linear.pt` ({weight [H, H], bias [H]}) and `sparse_linear.pt` ({weight [1, H],
    bias [1]}) as plain state dicts, and the XLM-R tokenizer files (ids 0 `<s>`, 1 `<pad>`, 2 `</s>`,
    3 `<unk>`, last `<mask>`; model_max_length 8192). The tokenizer is the same for every preset and
    seed; the weights depend only on (preset, num_layers, seed). The same arguments give byte-identical
    files with the same torch / sentencepiece / safetensors versions, also across CPU SIMD levels (the
    draws avoid SIMD-dependent math). A private `torch.Generator` is used: global RNG state is untouched.

    `num_layers` overrides the preset's layer count. The directory (and its parents) is created; if it
    exists and is not empty, `InputValueError` is raised unless `exist_ok`, in which case the files
    above are replaced and other files are left alone. Files are staged in a sibling temporary
    directory and moved in at the end, so a failed build leaves no partial checkpoint behind.
    """
    shape = resolve_shape(preset, num_layers)
    check_seed(seed)
    target = pathlib.Path(directory).expanduser().absolute()
    with staged(target, CHECKPOINT_FILES, exist_ok=exist_ok) as staging:
        for name, data in xlmr_tokenizer_files().items():
            (staging / name).write_bytes(data)
        vocab_size = len(xlmr_vocab())
        (staging / "config.json").write_bytes(_config_json(shape, vocab_size))
        _write_weights(staging, shape, vocab_size=vocab_size, seed=seed)
    return target


def resolve_shape(preset: str, num_layers: int | None) -> CheckpointPreset:
    """The encoder shape of ``preset`` with ``num_layers`` layers if given (checked)."""
    if preset not in PRESETS:
        raise InputValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    shape = PRESETS[preset]
    if num_layers is None:
        return shape
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise InputValueError(f"num_layers must be a positive int, got {num_layers!r}")
    return dataclasses.replace(shape, num_hidden_layers=num_layers)


def check_seed(seed: int) -> None:
    """``seed`` is an int in ``[0, 2**63)``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InputValueError(f"seed must be an int in [0, 2**63), got {seed!r}")


@contextlib.contextmanager
def staged(target: pathlib.Path, names: tuple[str, ...], *, exist_ok: bool) -> Iterator[pathlib.Path]:
    """A sibling temporary directory to write ``names`` into (paths relative to it, at most one
    subdirectory deep); on success they are moved into ``target`` (created), so a failed build leaves
    no partial checkpoint behind."""
    check_target(target, exist_ok=exist_ok)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield staging
        target.mkdir(exist_ok=True)
        check_target(target, exist_ok=exist_ok)  # someone may have filled it meanwhile
        for name in names:
            (target / name).parent.mkdir(exist_ok=True)  # names may sit in a subdirectory (1_Pooling/config.json)
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_target(target: pathlib.Path, *, exist_ok: bool) -> None:
    """``target`` is absent, an empty directory, or (with ``exist_ok``) any directory."""
    if not target.exists():
        return
    if not target.is_dir():
        raise InputValueError(f"{target} exists and is not a directory")
    if not exist_ok and any(target.iterdir()):
        raise InputValueError(f"{target} exists and is not empty (exist_ok=True replaces the checkpoint files)")


def _config_json(shape: CheckpointPreset, vocab_size: int) -> bytes:
    """bge-m3's config.json with this checkpoint's sizes."""
    config = {
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": MAX_POSITION_EMBEDDINGS,
        "model_type": "xlm-roberta",
        "num_attention_heads": shape.num_attention_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.33.0",
        "type_vocab_size": 1,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
    return json_bytes(config)


def encoder_tensor_specs(
    shape: CheckpointPreset,
    vocab_size: int,
    *,
    positions: int = MAX_POSITION_EMBEDDINGS,
    type_vocab_size: int = 1,
    token_type_kind: str = "token_type",
    pooler: bool = True,
) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """(key, shape, kind) of every tensor of a BERT-family encoder (``BertModel`` /
    ``XLMRobertaModel`` keys, no prefix), in a fixed order: the draw order of the builders."""
    h, i = shape.hidden_size, shape.intermediate_size
    yield "embeddings.word_embeddings.weight", (vocab_size, h), "word"
    yield "embeddings.position_embeddings.weight", (positions, h), "position"
    yield "embeddings.token_type_embeddings.weight", (type_vocab_size, h), token_type_kind
    yield "embeddings.LayerNorm.weight", (h,), "ln_weight"
    yield "embeddings.LayerNorm.bias", (h,), "ln_bias"
    for n in range(shape.num_hidden_layers):
        prefix = f"encoder.layer.{n}."
        for name in ("query", "key", "value"):
            yield f"{prefix}attention.self.{name}.weight", (h, h), "query_key" if name != "value" else "value_output"
            yield f"{prefix}attention.self.{name}.bias", (h,), "bias"
        yield f"{prefix}attention.output.dense.weight", (h, h), "value_output"
        yield f"{prefix}attention.output.dense.bias", (h,), "bias"
        yield f"{prefix}attention.output.LayerNorm.weight", (h,), "ln_weight"
        yield f"{prefix}attention.output.LayerNorm.bias", (h,), "ln_bias"
        yield f"{prefix}intermediate.dense.weight", (i, h), "ffn_in"
        yield f"{prefix}intermediate.dense.bias", (i,), "bias"
        yield f"{prefix}output.dense.weight", (h, i), "ffn_out"
        yield f"{prefix}output.dense.bias", (h,), "bias"
        yield f"{prefix}output.LayerNorm.weight", (h,), "ln_weight"
        yield f"{prefix}output.LayerNorm.bias", (h,), "ln_bias"
    if pooler:
        yield "pooler.dense.weight", (h, h), "pooler"
        yield "pooler.dense.bias", (h,), "bias"


_MATRIX_GAINS: Final[Mapping[str, float]] = MappingProxyType(
    {
        "query_key": _QUERY_KEY_GAIN,
        "value_output": _VALUE_OUTPUT_GAIN,
        "ffn_in": _FEED_FORWARD_GAIN,
        "pooler": _POOLER_GAIN,
        "colbert": _COLBERT_GAIN,
        "sparse": _SPARSE_GAIN,
        "head": _HEAD_GAIN,
    }
)


def random_tensor(shape: tuple[int, ...], kind: str, generator: torch.Generator, *, padding_idx: int | None = 1) -> torch.Tensor:
    """One fp32 tensor of the given kind, drawn from `generator`.

    Kinds: "word" and "position" embeddings (row `padding_idx` zeroed, as HF's init does; XLM-R pads
    with 1, BERT's word table with 0 and its position table not at all: pass None), "token_type"
    (XLM-R's single type, pure common mode), "segment" (BERT's two types, std 0.5 so that a dropped
    `token_type_ids` changes a cross-encoder's score), "ln_weight", "ln_bias", "bias", "ffn_out" and
    the matrices "query_key", "value_output", "ffn_in", "pooler", "colbert", "sparse", "head".

    Uniform rather than normal: `torch.rand` gives the same bits on every CPU, while `torch.randn`'s
    vectorised Box-Muller differs in the last bit between ATen's default and AVX2/AVX-512 kernels, and
    every later step is a single IEEE operation per element (or an exact sum), so the file bytes do not
    depend on the machine's SIMD level.
    """
    # Multiples of 2**-23 in (-1, 1): exact, and any sum of up to 2**29 of them is exact in float64.
    unit = torch.rand(shape, generator=generator, dtype=torch.float32).mul_(2.0).sub_(1.0)
    if kind in ("word", "position"):
        tensor = unit.mul_(uniform_scale(_WORD_EMBEDDING_STD if kind == "word" else _POSITION_EMBEDDING_STD))
        if padding_idx is not None:
            tensor[padding_idx].zero_()
    elif kind == "token_type":
        tensor = unit.mul_(uniform_scale(_TOKEN_TYPE_EMBEDDING_STD))
    elif kind == "segment":
        tensor = unit.mul_(uniform_scale(_SEGMENT_EMBEDDING_STD))
    elif kind == "ln_weight":
        tensor = unit.mul_(uniform_scale(_LAYER_NORM_WEIGHT_STD)).add_(1.0)
    elif kind == "ln_bias":
        tensor = unit.mul_(uniform_scale(_LAYER_NORM_BIAS_STD))
    elif kind == "bias":
        tensor = unit.mul_(uniform_scale(_BIAS_STD))
    elif kind == "ffn_out":
        # Zero-sum rows: GELU outputs have a positive mean, which a random projection turns into one
        # vector shared by every token; left in, it dominated the sparse logit (10-75 % positive by seed).
        wide = unit.double()
        wide -= wide.sum(dim=1, keepdim=True) / shape[1]
        tensor = wide.mul_(uniform_scale(_FEED_FORWARD_GAIN / math.sqrt(shape[1]))).float()
    else:
        tensor = unit.mul_(uniform_scale(_MATRIX_GAINS[kind] / math.sqrt(shape[1])))
    return tensor


def uniform_scale(std: float) -> float:
    """Half-width of the uniform distribution with standard deviation `std`."""
    return std * math.sqrt(3.0)


def _write_weights(directory: pathlib.Path, shape: CheckpointPreset, *, vocab_size: int, seed: int) -> None:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    specs = encoder_tensor_specs(shape, vocab_size)
    encoder = {key: random_tensor(dims, kind, generator) for key, dims, kind in specs}
    save_file(encoder, str(directory / "model.safetensors"), metadata={"format": "pt"})
    del encoder
    h = shape.hidden_size
    colbert = {"weight": random_tensor((h, h), "colbert", generator), "bias": random_tensor((h,), "bias", generator)}
    sparse = {"weight": random_tensor((1, h), "sparse", generator), "bias": random_tensor((1,), "bias", generator)}
    torch.save(colbert, directory / "colbert_linear.pt")
    torch.save(sparse, directory / "sparse_linear.pt")
