"""Finding and loading a checkpoint in the BAAI/bge-m3 layout.

A checkpoint directory holds ``config.json``, encoder weights (``model.safetensors`` or
``pytorch_model.bin``), the two heads (``colbert_linear.pt``: weight ``[C, H]`` + bias ``[C]``;
``sparse_linear.pt``: weight ``[1, H]`` + bias ``[1]``; a ``.safetensors`` twin of either is
preferred when present) and the tokenizer files. Nothing here unpickles arbitrary objects: heads
are read with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from m3rag.errors import CheckpointError, CheckpointNotFoundError

__all__ = ["Checkpoint", "load_checkpoint", "resolve_checkpoint_dir", "looks_like_hub_id"]

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "sentencepiece.bpe.model")
_HUB_FILES = [
    "config.json",
    "colbert_linear.pt",
    "sparse_linear.pt",
    "sentencepiece.bpe.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
]


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: encoder, tokenizer and (unless dense-only) the two heads, on CPU."""

    name: str
    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    colbert_linear: torch.nn.Linear | None
    sparse_linear: torch.nn.Linear | None


def looks_like_hub_id(name: str) -> bool:
    """True for ``"org/name"`` strings that are not an existing local path."""
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def resolve_checkpoint_dir(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    dense_only: bool = False,
) -> Path:
    """Return a local directory for ``name_or_path``: the directory itself, or a hub snapshot.

    Only ``org/name`` strings that do not exist locally are treated as hub ids; any other missing
    path raises :class:`CheckpointNotFoundError` without touching the network.
    """
    raw = os.fspath(name_or_path)
    path = Path(raw).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointNotFoundError(f"model path {raw!r} is a file, not a checkpoint directory", path)
        return path
    if isinstance(name_or_path, os.PathLike) or not _HUB_ID.match(raw):
        raise CheckpointNotFoundError(
            f"model directory {raw!r} does not exist (hub ids look like 'BAAI/bge-m3')", path
        )
    return _download(raw, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, dense_only=dense_only)


def _download(
    repo_id: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    dense_only: bool,
) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    files = [f for f in _HUB_FILES if not (dense_only and f in ("colbert_linear.pt", "sparse_linear.pt"))]
    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    try:
        # Prefer safetensors; fall back to the pickle-free torch .bin only if the repo lacks it.
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


def _load_head(directory: Path, stem: str, hidden_size: int, out_features: int | None) -> torch.nn.Linear:
    """Load ``{stem}.safetensors`` or ``{stem}.pt`` as a Linear ``hidden_size -> out`` head."""
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

            state = load_file(str(path), device="cpu")
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
    if (
        weight.ndim != 2
        or weight.shape[1] != hidden_size
        or (out_features is not None and out != out_features)
        or tuple(bias.shape) != (out,)
        or out < 1
    ):
        want = f"[{out_features or 'C'}, {hidden_size}]"
        raise CheckpointError(
            f"head file {path} has weight {list(weight.shape)} and bias {list(bias.shape)}; "
            f"expected weight {want} and a matching bias for hidden size {hidden_size}",
            path,
        )
    head = torch.nn.Linear(hidden_size, out, dtype=torch.float32)
    head.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return head


def load_checkpoint(
    name_or_path: str | os.PathLike[str],
    *,
    dense_only: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    attn_implementation: str | None = "sdpa",
    dtype: torch.dtype = torch.float32,
) -> Checkpoint:
    """Load encoder (in ``dtype``), tokenizer and heads (fp32) on CPU, in eval mode."""
    directory = resolve_checkpoint_dir(
        name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, dense_only=dense_only
    )
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory / 'config.json'} is missing: not a checkpoint directory", directory / "config.json")
    if not any((directory / f).is_file() for f in _WEIGHT_FILES):
        raise CheckpointError(
            f"no encoder weights in {directory}: expected one of {', '.join(_WEIGHT_FILES)}", directory
        )
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        # transformers 5 would quietly build a 5-token tokenizer from tokenizer_config.json alone
        raise CheckpointError(
            f"no tokenizer in {directory}: expected {' or '.join(_TOKENIZER_FILES)}", directory / _TOKENIZER_FILES[0]
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise CheckpointError(f"tokenizer files in {directory} are missing or unreadable: {exc}", directory) from exc
    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar for every encoder
    try:
        model = AutoModel.from_pretrained(directory, dtype=dtype, attn_implementation=attn_implementation)
    except Exception as exc:
        raise CheckpointError(f"encoder weights in {directory} could not be loaded: {exc}", directory) from exc
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # bge-m3 ships an unused pooler: loaded (no key warnings), then dropped
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(
            f"tokenizer in {directory} has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{model.config.vocab_size}: tokenizer and weights do not belong together",
            directory,
        )
    model.eval().requires_grad_(False)
    hidden = int(model.config.hidden_size)
    if dense_only:
        colbert = sparse = None
    else:
        colbert = _load_head(directory, "colbert_linear", hidden, None)
        sparse = _load_head(directory, "sparse_linear", hidden, 1)
        colbert.eval().requires_grad_(False)
        sparse.eval().requires_grad_(False)
    return Checkpoint(os.fspath(name_or_path), directory, model, tokenizer, colbert, sparse)
