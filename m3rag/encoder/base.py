"""What every model kind shares: loading, device and dtype, tokenization, token-budget batching,
out-of-memory recovery, request coalescing and the process-wide registry.

A model kind (:class:`~m3rag.M3Encoder`, the dense BGE encoder, LLM-Embedder, the cross-encoder)
subclasses :class:`TransformerModel` and writes only its own head: what one padded batch's
forward pass turns into, and how batches are assembled into its output type.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from m3rag.encoder import checkpoint as ckpt
from m3rag.encoder.batching import plan_batches
from m3rag.encoder.coalescing import Coalescer, ObserveFn
from m3rag.encoder.cpu_fusion import fuse_cpu_linears, fusion_supported
from m3rag.encoder.device import DeviceLike, DTypeLike, resolve_device, resolve_dtype
from m3rag.encoder.registry import REGISTRY, model_key
from m3rag.encoder.truncation import TruncationWarning, warn_truncated
from m3rag.errors import CheckpointError, InputTypeError, InputValueError, ModelKindError
from m3rag.validation import check_positive_int

__all__ = ["TransformerModel", "TruncationWarning", "resolve_precision"]

logger = logging.getLogger(__name__)

Out = TypeVar("Out")
Model = TypeVar("Model", bound="TransformerModel[Any]")

BATCH_TOKENS = {"cpu": 2048, "mps": 8192, "cuda": 16384}
"""Default token budget per padded batch, by device type. On CPU small batches keep the working
set in cache: 2048 measured fastest on the wide checkpoint (benchmarks/encode.py)."""


def resolve_precision(
    device: DeviceLike, dtype: DTypeLike, use_fp16: bool | None = None, devices: Any = None
) -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run on, also from FlagEmbedding's ``use_fp16`` / ``devices`` arguments.

    ``devices`` may name one device (a str or a one-item list): m3rag runs one device per model
    object. ``use_fp16=True`` means float16 on a GPU; on CPU, where FlagEmbedding computes in
    float32 from fp16-rounded weights, it means float32. ``use_fp16`` together with ``dtype`` is
    an error.
    """
    if devices is not None:
        if device is not None:
            raise InputValueError("pass device= or FlagEmbedding's devices=, not both")
        if isinstance(devices, (list, tuple)):
            if len(devices) != 1:
                raise InputValueError(
                    f"devices={devices!r}: an m3rag model runs on one device; for several GPUs run one "
                    "model per device (or `m3rag serve` per GPU, or m3rag.distributed on Ray)"
                )
            devices = devices[0]
        device = devices
    resolved_device = resolve_device(device)
    if use_fp16 is not None:
        if dtype is not None:
            raise InputValueError("pass dtype= or FlagEmbedding's use_fp16=, not both")
        if not isinstance(use_fp16, bool):
            raise InputTypeError(f"use_fp16 must be a bool, got {type(use_fp16).__name__}")
        dtype = "float16" if use_fp16 and resolved_device.type in ("cuda", "mps") else "float32"
    return resolved_device, resolve_dtype(dtype, resolved_device)


class TransformerModel(Generic[Out]):
    """A transformers checkpoint run the m3rag way; subclasses add a head and an output type.

    ``Out`` is what one call of :meth:`_process` returns for a list of inputs; it must support
    ``out.slice(start, stop)`` or ``out[start:stop]`` so coalesced callers get their own part.
    """

    batch_size: int = 256
    """Default maximum number of inputs per forward pass."""
    model_class: ClassVar[str] = "AutoModel"
    """The transformers class that loads the checkpoint."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        batch_tokens: int | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        attn_implementation: str | None = "sdpa",
        use_fp16: bool | None = None,
        devices: Any = None,
    ) -> None:
        name = self._model_name(model_name_or_path)
        self.device, self.dtype = resolve_precision(device, dtype, use_fp16, devices)
        directory = ckpt.resolve_checkpoint_dir(
            name, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, extra_files=self._extra_files()
        )
        ckpt.check_layout(directory)
        config = ckpt.check_config(directory)
        self._check_config(config, directory)
        self.tokenizer = ckpt.load_tokenizer(directory)
        import transformers

        model_class = getattr(transformers, self.model_class)
        model = ckpt.load_model(directory, model_class, dtype=self.dtype, attn_implementation=attn_implementation)
        if len(self.tokenizer) > model.config.vocab_size:
            raise CheckpointError(
                f"tokenizer in {directory} has {len(self.tokenizer)} tokens but the model's vocabulary has "
                f"{model.config.vocab_size}: tokenizer and weights do not belong together",
                directory,
            )
        self.name: str = os.fspath(name)
        self.path: Path = directory
        self.model = model.to(self.device)
        if fusion_supported(self.model, self.device, self.dtype):
            fuse_cpu_linears(self.model)
        self.config = model.config
        self.vocab_size: int = int(model.config.vocab_size)
        offset = int(getattr(model.config, "pad_token_id", 0) or 0) + 1 if model.config.model_type in ("xlm-roberta", "roberta") else 0
        self.max_length: int = int(model.config.max_position_embeddings) - offset
        """The longest input the model takes, in tokens (specials included)."""
        self.batch_tokens: int = check_positive_int(
            batch_tokens if batch_tokens is not None else BATCH_TOKENS.get(self.device.type, 8192), "batch_tokens", minimum=2
        )
        tok = self.tokenizer
        self._pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)
        self._tokenizer_lock = threading.Lock()
        self._coalescer: Coalescer | None = None
        self._heads = self._load_heads(directory)
        self.fingerprint: str = ckpt.fingerprint(directory, self.tokenizer, self._heads)
        """16 hex digits identifying the weights and tokenizer (not the path, dtype or library versions)."""

    # ------------------------------------------------------------------ hooks
    @classmethod
    def default_model(cls) -> str | None:
        """The model loaded when none is named (``None``: a name is required)."""
        return None

    @classmethod
    def _model_name(cls, name: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
        name = name if name is not None else cls.default_model()
        if name is None:
            raise InputValueError(f"{cls.__name__} needs a model name or path")
        return name

    def _extra_files(self) -> tuple[str, ...]:
        """Hub files to fetch besides config, tokenizer and weights."""
        return ()

    def _check_config(self, config: dict[str, Any], directory: Path) -> None:
        """Refuse a checkpoint of another kind: by default, a sequence-classification checkpoint
        (a cross-encoder) loaded as a plain encoder, or anything else loaded as a cross-encoder."""
        architectures = config.get("architectures") or []
        classifier = any(str(a).endswith("ForSequenceClassification") for a in architectures)
        kind = type(self).__name__
        if self.model_class == "AutoModel" and classifier:
            raise ModelKindError(
                f"{directory} holds a cross-encoder ({', '.join(architectures)}): it scores (query, passage) pairs and "
                f"gives no embeddings; load it with BGEReranker, not {kind}",
                directory / "config.json",
            )
        if self.model_class == "AutoModelForSequenceClassification" and not classifier:
            what = ", ".join(architectures) if architectures else "no architectures in config.json"
            raise ModelKindError(
                f"{directory} is not a cross-encoder ({what}); {kind} needs a *ForSequenceClassification checkpoint "
                "(bge-reranker-base/large/v2-m3). Embedding models load with M3Encoder, BGEEncoder or LLMEmbedder",
                directory / "config.json",
            )

    def _load_heads(self, directory: Path) -> ckpt.Heads | None:
        """Load extra weights outside the transformers model (fp32, CPU); they join the fingerprint
        and are kept in ``self._heads`` for the subclass to place on the device."""
        return None

    _process: Callable[..., Out]
    """``_process(items, **options) -> Out``: the batched computation that coalescing shares between
    callers; each model kind defines it with its own keyword-only options."""

    # ------------------------------------------------------------------ sharing
    @classmethod
    def _share_key(cls, options: dict[str, Any]) -> tuple[Hashable, tuple[Hashable, ...]]:
        """The part of the registry key that constructor ``options`` contribute, and keys to reuse."""
        return tuple(sorted((k, str(v)) for k, v in options.items() if k in ("revision", "batch_tokens"))), ()

    @classmethod
    def _all_options_key(cls, options: dict[str, Any]) -> tuple[Hashable, ...]:
        """A registry key part for kinds whose every constructor option changes their outputs:
        the options that differ from the constructor's defaults (so ``x=None`` given or left out
        is the same instance when ``None`` is the default)."""
        defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
        empty = inspect.Parameter.empty
        given = {k: v for k, v in options.items() if defaults.get(k, empty) is empty or v != defaults[k]}
        return tuple(sorted((k, repr(v)) for k, v in given.items()))

    @classmethod
    def shared(
        cls: type[Model],
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        **kwargs: Any,
    ) -> Model:
        """The process-wide instance for ``(kind, model, device, dtype)``, loaded on first use.

        Every component resolves model names through this, so the weights are loaded once per
        process, even when many threads ask at once. ``kwargs`` go to the constructor.
        """
        name = cls._model_name(model_name_or_path)
        resolved_device, resolved_dtype = resolve_precision(device, dtype, kwargs.pop("use_fp16", None), kwargs.pop("devices", None))
        own, reuse = cls._share_key(kwargs)
        base = (cls.__name__, model_key(name), str(resolved_device), resolved_dtype)
        return REGISTRY.get(
            (*base, own),
            lambda: cls(name, device=resolved_device, dtype=resolved_dtype, **kwargs),
            reuse=[(*base, r) for r in reuse],
        )

    @classmethod
    def clear_shared(cls) -> None:
        """Forget every shared model instance (memory is freed once no one else holds them)."""
        REGISTRY.clear()

    # ------------------------------------------------------------------ tokens and batches
    def tokenize(self, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
        """Token ids with the model's specials (``<s> ... </s>`` or ``[CLS] ... [SEP]``), cut to
        ``max_length`` keeping the closing special; and a ``bool [n]`` array of which were cut."""
        if not texts:
            return [], np.zeros(0, dtype=bool)
        ids = self._tokenize(
            lambda tok: tok(
                list(texts),
                add_special_tokens=True,
                truncation=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                verbose=False,
            )["input_ids"],
            texts,
        )
        truncated = np.fromiter((len(x) > max_length for x in ids), dtype=bool, count=len(ids))
        for i in np.flatnonzero(truncated).tolist():
            ids[i] = ids[i][: max_length - 1] + ids[i][-1:]
        return ids, truncated

    def _tokenize(self, call: Callable[[Any], Any], texts: Sequence[str]) -> Any:
        """Run ``call(tokenizer)`` under the tokenizer lock; invalid Unicode becomes a typed error."""
        try:
            with self._tokenizer_lock:  # HF fast tokenizers are not safe to call from several threads
                return call(self.tokenizer)
        except TypeError:  # the tokenizer cannot take text that is not valid Unicode
            for i, text in enumerate(texts):
                for part in (text,) if isinstance(text, str) else text:
                    try:
                        part.encode("utf-8")
                    except UnicodeEncodeError as exc:
                        raise InputValueError(f"texts[{i}] is not valid Unicode ({exc.reason} at position {exc.start})") from None
            raise

    def _warn_truncated(self, truncated: np.ndarray, max_length: int, what: str = "texts") -> None:
        warn_truncated(truncated, max_length, what)

    def _collate(self, batch_ids: list[list[int]], batch_types: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
        """Right-pad one batch: ``input_ids``, ``attention_mask`` (and ``token_type_ids``) on the device."""
        lengths = np.fromiter(map(len, batch_ids), dtype=np.int64, count=len(batch_ids))
        mask = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
        total = int(lengths.sum())
        ids = np.full(mask.shape, self._pad_id, dtype=np.int64)
        ids[mask] = np.fromiter((t for row in batch_ids for t in row), dtype=np.int64, count=total)
        arrays = {"input_ids": ids, "attention_mask": mask.astype(np.int64)}
        if batch_types is not None:
            types = np.zeros(mask.shape, dtype=np.int64)
            types[mask] = np.fromiter((t for row in batch_types for t in row), dtype=np.int64, count=total)
            arrays["token_type_ids"] = types
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
        if self.device.type == "cuda":
            return {k: v.pin_memory().to(self.device, non_blocking=True) for k, v in tensors.items()}
        if self.device.type != "cpu":
            return {k: v.to(self.device) for k, v in tensors.items()}
        return tensors

    def _forward(self, batch_ids: list[list[int]], batch_types: list[list[int]] | None = None) -> tuple[Any, dict[str, torch.Tensor]]:
        """The model's output for one right-padded batch, and the padded inputs."""
        inputs = self._collate(batch_ids, batch_types)
        return self.model(**inputs), inputs

    def _run_batches(
        self,
        lengths: np.ndarray,
        step: Callable[[np.ndarray], None],
        *,
        batch_size: int,
        batch_tokens: int,
        show_progress_bar: bool | None,
        desc: str = "Encoding",
    ) -> None:
        """Call ``step(indices)`` for each length-sorted batch under the token budget, under
        ``inference_mode``. On CUDA out-of-memory only, the budget is halved and the rest re-planned;
        ``step`` must record its results only after its device work succeeded."""
        pending = deque(plan_batches(lengths, batch_size=batch_size, batch_tokens=batch_tokens))
        progress = tqdm(
            total=len(lengths),
            desc=desc,
            unit="text",
            delay=2.0,
            disable=(not show_progress_bar) if show_progress_bar is not None else None,
        )
        with progress, torch.inference_mode():
            while pending:
                batch = pending.popleft()
                try:
                    step(batch)
                except torch.cuda.OutOfMemoryError:
                    if len(batch) == 1:
                        raise
                    torch.cuda.empty_cache()
                    batch_tokens = max(2, len(batch) * int(lengths[batch[0]]) // 2)
                    logger.warning("CUDA out of memory; retrying with batch_tokens=%d", batch_tokens)
                    rest = np.concatenate([batch, *pending])
                    pending = deque(rest[b] for b in plan_batches(lengths[rest], batch_size=batch_size, batch_tokens=batch_tokens))
                    continue
                progress.update(len(batch))

    def _check_batching(
        self, batch_size: int | None, max_length: int | None, batch_tokens: int | None, default_max_length: int
    ) -> dict[str, int]:
        options = dict(
            batch_size=check_positive_int(self.batch_size if batch_size is None else batch_size, "batch_size"),
            max_length=check_positive_int(default_max_length if max_length is None else max_length, "max_length", minimum=2),
            batch_tokens=check_positive_int(self.batch_tokens if batch_tokens is None else batch_tokens, "batch_tokens", minimum=2),
        )
        if options["max_length"] > self.max_length:
            raise InputValueError(f"max_length={options['max_length']} exceeds the model's limit of {self.max_length} tokens")
        return options

    # ------------------------------------------------------------------ coalescing
    def enable_coalescing(self, window_ms: float = 2.0, max_texts: int = 64, *, observe: ObserveFn | None = None) -> None:
        """Gather concurrent small calls (at most ``max_texts`` inputs each) into shared forward
        passes, waiting at most ``window_ms`` for company. Each caller gets the outputs it would
        get alone. Larger calls run directly. ``observe`` sees every shared call (see
        :class:`~m3rag.encoder.coalescing.Coalescer`)."""
        check_positive_int(max_texts, "max_texts")
        if not isinstance(window_ms, (int, float)) or not 0 <= window_ms < 10_000:
            raise InputValueError(f"window_ms must be a number of milliseconds in [0, 10000), got {window_ms!r}")
        self.disable_coalescing()
        self._coalescer = Coalescer(self._process, window_ms=window_ms, max_texts=max_texts, observe=observe)

    def disable_coalescing(self) -> None:
        """Back to one forward pass per call (queued requests are served first)."""
        coalescer, self._coalescer = self._coalescer, None
        if coalescer is not None:
            coalescer.close()

    @property
    def coalescing(self) -> bool:
        return self._coalescer is not None

    def _call(self, items: list[Any], options: dict[str, Any]) -> Out:
        coalescer = self._coalescer
        if coalescer is not None and 0 < len(items) <= coalescer.max_texts:
            return coalescer.submit(items, **options).result()  # type: ignore[no-any-return]
        return self._process(items, **options)

    async def _acall(self, items: list[Any], options: dict[str, Any]) -> Out:
        """:meth:`_call` for asyncio: the event loop never waits on the model."""
        coalescer = self._coalescer
        if coalescer is not None and 0 < len(items) <= coalescer.max_texts:
            return await asyncio.wrap_future(coalescer.submit(items, **options))
        return await asyncio.to_thread(self._process, items, **options)
