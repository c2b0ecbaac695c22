"""Finding, checking and loading checkpoints in the BAAI layouts.

A checkpoint directory holds ``config.json``, encoder weights (``model.safetensors`` or
``pytorch_model.bin``, possibly sharded with an ``.index.json``) and tokenizer files; a bge-m3
checkpoint also holds its two heads (``colbert_linear.pt``: weight ``[C, H]`` + bias ``[C]``;
``sparse_linear.pt``: weight ``[1, H]`` + bias ``[1]``; a ``.safetensors`` twin of either is
preferred when present). Nothing here unpickles arbitrary objects: weights are read with
safetensors or ``torch.load(weights_only=True)``, and ``trust_remote_code`` is never set.

Before a model is built, :func:`check_config` compares ``config.json`` with the weight files'
headers (layer count, widths, vocabulary), so a config that does not fit its weights fails in
milliseconds instead of after building a huge model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from m3rag.encoder.registry import looks_like_hub_id
from m3rag.errors import CheckpointError, CheckpointNotFoundError

__all__ = [
    "Heads",
    "check_config",
    "check_layout",
    "fingerprint",
    "load_heads",
    "load_model",
    "load_tokenizer",
    "looks_like_hub_id",
    "resolve_checkpoint_dir",
]

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model", "vocab.txt")
TOKENIZER_HUB_FILES = (
    "sentencepiece.bpe.model",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
M3_HEAD_FILES = ("colbert_linear.pt", "sparse_linear.pt")
_WEIGHT_PREFIXES = ("roberta.", "bert.", "model.", "xlm_roberta.")
_MAX_JSON_BYTES = 64 << 20  # a config.json or safetensors header larger than this is not a real one
_MAX_LAYERS = 1024
_MAX_WIDTH = 1 << 16
_SAMPLE = 64  # elements read from each end of every tensor for the fingerprint


@dataclass(frozen=True)
class Heads:
    """bge-m3's two heads (fp32, CPU)."""

    colbert: torch.nn.Linear
    sparse: torch.nn.Linear


def resolve_checkpoint_dir(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    extra_files: Sequence[str] = (),
) -> Path:
    """A local directory for ``name_or_path``: the directory itself, or a hub snapshot.

    Only ``org/name`` strings that do not exist locally are treated as hub ids; any other missing
    path raises :class:`CheckpointNotFoundError` without touching the network. From the hub, the
    config, tokenizer files, ``extra_files`` and the weights (safetensors preferred) are fetched.
    """
    raw = os.fspath(name_or_path)
    path = Path(raw).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointNotFoundError(f"model path {raw!r} is a file, not a checkpoint directory", path)
        return path
    if isinstance(name_or_path, os.PathLike) or not _HUB_ID.match(raw):
        raise CheckpointNotFoundError(f"model directory {raw!r} does not exist (hub ids look like 'BAAI/bge-m3')", path)
    files = ["config.json", *TOKENIZER_HUB_FILES, *extra_files]
    return _download(raw, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, files=files)


def _download(
    repo_id: str, *, revision: str | None, cache_dir: str | os.PathLike[str] | None, local_files_only: bool, files: list[str]
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    kwargs: dict[str, Any] = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    try:
        # Prefer safetensors; fall back to the torch .bin (read without pickle) only if the repo lacks it.
        snapshot = Path(snapshot_download(allow_patterns=[*files, "model.safetensors*"], **kwargs))
        if not any((snapshot / f).exists() for f in _WEIGHT_FILES):
            snapshot = Path(snapshot_download(allow_patterns=[*files, "pytorch_model.bin*"], **kwargs))
    except LocalEntryNotFoundError as exc:
        raise CheckpointNotFoundError(
            f"model {repo_id!r} is not in the local Hugging Face cache and the hub cannot be reached "
            f"(offline, or local_files_only=True): {exc}"
        ) from exc
    except Exception as exc:  # hub errors come in many types; name the model in one.
        raise CheckpointNotFoundError(f"could not download model {repo_id!r} from the hub: {exc}") from exc
    return snapshot


def check_layout(directory: Path) -> None:
    """Config, weights and tokenizer files are present (each missing one is named)."""
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory / 'config.json'} is missing: not a checkpoint directory", directory / "config.json")
    if not any((directory / f).is_file() for f in _WEIGHT_FILES):
        raise CheckpointError(f"no encoder weights in {directory}: expected one of {', '.join(_WEIGHT_FILES)}", directory)
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        # transformers 5 would quietly build a 5-token tokenizer from tokenizer_config.json alone
        raise CheckpointError(
            f"no tokenizer in {directory}: expected one of {', '.join(_TOKENIZER_FILES)}", directory / _TOKENIZER_FILES[0]
        )


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is {path.stat().st_size} bytes: too large for a JSON file of a checkpoint", path)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path} is unreadable or not valid JSON: {exc}", path) from None


# ---------------------------------------------------------------------------------------- weights
def _weight_files(directory: Path) -> list[Path]:
    """The files from_pretrained reads (safetensors first), shards in order."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"), ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            listing = _read_json(directory / index)
            weight_map = listing.get("weight_map") if isinstance(listing, dict) else None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise CheckpointError(f"{directory / index} has no valid weight_map", directory / index)
            shards = []
            for name in dict.fromkeys(weight_map.values()):
                shard = (directory / name).resolve()
                if shard.parent != directory.resolve() or not shard.is_file():
                    raise CheckpointError(
                        f"{directory / index} names shard {name!r}, which is not a file of {directory}", directory / index
                    )
                shards.append(shard)
            return shards
    raise CheckpointError(f"no encoder weights in {directory}", directory)


def _safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > min(_MAX_JSON_BYTES, path.stat().st_size - 8):
                raise ValueError(f"header size {size} exceeds the file")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error, RecursionError) as exc:
        raise CheckpointError(f"encoder weights {path} are not a readable safetensors file: {exc}", path) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has an invalid safetensors header", path)
    header.pop("__metadata__", None)
    return header


def _normalise(name: str) -> str:
    for prefix in _WEIGHT_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _tensors(directory: Path) -> Iterator[tuple[str, tuple[int, ...], Callable[[], torch.Tensor]]]:
    """``(normalised name, shape, read the fingerprint sample)`` of every weight tensor, by file."""
    for path in _weight_files(directory):
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            header = _safetensors_header(path)
            handle = safe_open(str(path), framework="pt")
            for name in sorted(header):
                shape = tuple(int(d) for d in header[name]["shape"])
                yield _normalise(name), shape, functools.partial(_sample_slice, handle, name, shape)
        else:
            state = _load_bin(path)
            for name in sorted(state):
                tensor = state[name]
                yield _normalise(name), tuple(tensor.shape), functools.partial(_sample, tensor, tuple(tensor.shape))


def _sample_slice(handle: Any, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    return _sample(handle.get_slice(name), shape)


def _load_bin(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is unreadable, corrupt or holds code: {exc}", path) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors", path)
    return state


def _sample(source: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """The first and last ``_SAMPLE`` elements (row-major) of a tensor or safetensors slice, as float32."""
    if not shape:
        return torch.as_tensor(source[...] if not isinstance(source, torch.Tensor) else source).reshape(1).float()
    rows = shape[0]
    per_row = math.prod(shape[1:]) or 1
    take = min(rows, -(-_SAMPLE // per_row))
    head = torch.as_tensor(source[0:take]).reshape(-1)[:_SAMPLE]
    tail = torch.as_tensor(source[rows - take : rows]).reshape(-1)[-_SAMPLE:]
    return torch.cat([head, tail]).float()


def check_config(directory: Path) -> dict[str, Any]:
    """``config.json`` as a dict, checked against the weight files' shapes before anything is built.

    Refuses absurd sizes outright, and a config whose layer count, hidden size, vocabulary,
    positions or intermediate size differs from the weights (naming both).
    """
    path = directory / "config.json"
    config = _read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a JSON object", path)
    sizes = {}
    for field in ("num_hidden_layers", "hidden_size", "vocab_size", "max_position_embeddings", "intermediate_size", "num_attention_heads"):
        value = config.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"{path}: {field} must be a positive integer, got {value!r}", path)
        if field == "num_hidden_layers":
            limit = _MAX_LAYERS
        else:
            limit = 1 << 24 if field in ("vocab_size", "max_position_embeddings") else _MAX_WIDTH * 4
        if value > limit:
            raise CheckpointError(f"{path}: {field}={value} is beyond any supported model (at most {limit})", path)
        sizes[field] = value
    shapes = {name: shape for name, shape, _ in _tensors(directory)}
    where = ", ".join(p.name for p in _weight_files(directory))
    layers = sorted({int(m.group(1)) for n in shapes if (m := re.match(r"encoder\.layer\.(\d+)\.", n))})
    expected: list[tuple[str, int, int, str]] = []  # (config field, config value, weight value, where)
    if layers and "num_hidden_layers" in sizes:
        expected.append(("num_hidden_layers", sizes["num_hidden_layers"], len(layers), f"layers encoder.layer.{layers[0]}-{layers[-1]}"))
    word = shapes.get("embeddings.word_embeddings.weight")
    if word is not None and len(word) == 2:
        expected.append(("vocab_size", sizes.get("vocab_size", word[0]), word[0], "embeddings.word_embeddings rows"))
        expected.append(("hidden_size", sizes.get("hidden_size", word[1]), word[1], "embeddings.word_embeddings width"))
    position = shapes.get("embeddings.position_embeddings.weight")
    if position is not None and len(position) == 2:
        configured = sizes.get("max_position_embeddings", position[0])
        expected.append(("max_position_embeddings", configured, position[0], "embeddings.position_embeddings rows"))
    inner = shapes.get("encoder.layer.0.intermediate.dense.weight")
    if inner is not None and len(inner) == 2:
        configured = sizes.get("intermediate_size", inner[0])
        expected.append(("intermediate_size", configured, inner[0], "encoder.layer.0.intermediate.dense rows"))
    for field, configured, actual, what in expected:
        if configured != actual:
            raise CheckpointError(
                f"{path} says {field}={configured}, but the weights ({where}) have {actual} ({what}): "
                "config and weights do not belong together",
                path,
            )
    return config


def fingerprint(directory: Path, tokenizer: PreTrainedTokenizerBase, heads: Heads | None) -> str:
    """16 hex digits identifying the weights and the tokenizer, and nothing else.

    Hashes every weight tensor's name, shape and first and last 64 values (as stored, widened to
    float32), the heads' values, and the tokenizer's vocabulary with its special-token ids; not the
    config, the directory, the library versions or the dtype the model runs in. So a copied or
    re-downloaded model, a transformers upgrade or a bf16 run give the same fingerprint.
    """
    digest = hashlib.sha256(b"m3rag-fingerprint-2")
    for name, shape, sample in sorted(_tensors(directory), key=lambda t: t[0]):
        digest.update(f"{name}{shape}".encode())
        digest.update(sample().numpy().tobytes())
    if heads is not None:
        for prefix, module in (("colbert", heads.colbert), ("sparse", heads.sparse)):
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
                digest.update(_sample(tensor, tuple(tensor.shape)).numpy().tobytes())
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest.update(json.dumps(vocab, ensure_ascii=False).encode())
    digest.update(json.dumps(sorted(tokenizer.all_special_ids)).encode())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- loading
def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise CheckpointError(f"tokenizer files in {directory} are missing or unreadable: {exc}", directory) from exc


def load_model(directory: Path, model_class: Any, *, dtype: torch.dtype, attn_implementation: str | None) -> PreTrainedModel:
    """``model_class.from_pretrained`` (e.g. ``AutoModel``) in ``dtype`` on CPU, eval mode, no grads."""
    from transformers.utils import logging as hf_logging

    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar for every encoder
    try:
        model = model_class.from_pretrained(directory, dtype=dtype, attn_implementation=attn_implementation)
    except Exception as exc:
        raise CheckpointError(f"encoder weights in {directory} could not be loaded: {type(exc).__name__}: {exc}", directory) from exc
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    model.eval().requires_grad_(False)
    return model


def _load_head(directory: Path, stem: str, hidden_size: int, out_features: int | None) -> torch.nn.Linear:
    """Load ``{stem}.safetensors`` or ``{stem}.pt`` as a Linear ``hidden_size -> out`` head (fp32)."""
    st_path, pt_path = directory / f"{stem}.safetensors", directory / f"{stem}.pt"
    path = st_path if st_path.exists() else pt_path
    if not path.exists():
        raise CheckpointError(
            f"head file {pt_path} is missing; sparse and ColBERT outputs need it "
            "(pass dense_only=True to load the encoder for dense vectors only)",
            pt_path,
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"head file {path} is unreadable or corrupt: {exc}", path) from exc
    if not isinstance(state, Mapping) or set(state) != {"weight", "bias"}:
        keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(f"head file {path} must hold exactly 'weight' and 'bias', found {keys}", path)
    weight, bias = state["weight"], state["bias"]
    if not (isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)):
        raise CheckpointError(f"head file {path}: 'weight' and 'bias' must be tensors", path)
    out = weight.shape[0] if weight.ndim == 2 else -1
    wrong_out = out_features is not None and out != out_features
    if weight.ndim != 2 or weight.shape[1] != hidden_size or wrong_out or tuple(bias.shape) != (out,) or out < 1:
        want = f"[{out_features or 'C'}, {hidden_size}]"
        raise CheckpointError(
            f"head file {path} has weight {list(weight.shape)} and bias {list(bias.shape)}; "
            f"expected weight {want} and a matching bias for hidden size {hidden_size}",
            path,
        )
    if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
        raise CheckpointError(f"head file {path} holds NaN or infinite values", path)
    head = torch.nn.Linear(hidden_size, out, dtype=torch.float32)
    head.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return head.eval().requires_grad_(False)


def load_heads(directory: Path, hidden_size: int) -> Heads:
    """bge-m3's ColBERT and sparse heads, checked (shapes, finite values)."""
    return Heads(
        colbert=_load_head(directory, "colbert_linear", hidden_size, None),
        sparse=_load_head(directory, "sparse_linear", hidden_size, 1),
    )
