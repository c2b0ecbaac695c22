"""The shared M3 encoder: one forward pass, three representations."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import threading
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from m3rag import scoring
from m3rag.encoder import heads
from m3rag.encoder.batching import plan_batches
from m3rag.encoder.coalescing import Coalescer
from m3rag.encoder.checkpoint import load_checkpoint, looks_like_hub_id
from m3rag.encoder.device import DeviceLike, DTypeLike, resolve_device, resolve_dtype
from m3rag.encoder.output import M3Item, M3Output
from m3rag.errors import DenseOnlyError, InputTypeError, InputValueError
from m3rag.validation import check_positive_int, check_texts

__all__ = ["M3Encoder", "DEFAULT_MODEL", "M3TruncationWarning", "resolve_encoder"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "BAAI/bge-m3"
"""The model used when none is named and ``M3RAG_MODEL`` is not set."""

_BATCH_TOKENS = {"cpu": 2048, "mps": 8192, "cuda": 16384}
"""Default token budget per padded batch, by device type. On CPU small batches keep the working
set in cache: 2048 measured fastest on the wide checkpoint (benchmarks/encode.py)."""


class M3TruncationWarning(UserWarning):
    """Some texts were longer than ``max_length`` tokens and were truncated."""


def _caller_stacklevel() -> int:
    """``stacklevel`` for :func:`warnings.warn` that points at the first frame outside m3rag."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package_dir):
        frame, level = frame.f_back, level + 1
    return level


class M3Encoder:
    """A BGE-M3 checkpoint that gives dense, sparse and ColBERT outputs from one forward pass.

    ``M3Encoder(model_name_or_path=None, *, device=None, dtype=None, dense_only=False)`` loads a
    hub id (through the Hugging Face cache) or a local directory in the BAAI/bge-m3 layout; the
    default model is ``$M3RAG_MODEL`` or ``BAAI/bge-m3``. Device: CUDA > MPS > CPU; dtype: float16
    on GPU, float32 on CPU (``"bfloat16"`` selectable). ``dense_only=True`` loads without the
    sparse and ColBERT heads. Use :meth:`shared` to get the process-wide instance instead of
    loading the weights again. Instances are safe to use from several threads.

    Example::

        enc = M3Encoder.shared("BAAI/bge-m3")
        out = enc.encode(["What is BGE M3?"], return_sparse=True, return_colbert_vecs=True)
        out.dense.shape, out.lexical_weights[0], out.colbert_vecs[0].shape
    """

    batch_size: int = 256
    """Default maximum number of texts per forward pass."""
    query_max_length: int = 512
    passage_max_length: int = 8192

    _shared: ClassVar[dict[tuple[Any, ...], M3Encoder]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    _key_locks: ClassVar[dict[tuple[Any, ...], threading.Lock]] = {}

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        dense_only: bool = False,
        batch_tokens: int | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        attn_implementation: str | None = "sdpa",
    ) -> None:
        name = model_name_or_path if model_name_or_path is not None else os.environ.get("M3RAG_MODEL", DEFAULT_MODEL)
        self.device: torch.device = resolve_device(device)
        self.dtype: torch.dtype = resolve_dtype(dtype, self.device)
        checkpoint = load_checkpoint(
            name,
            dense_only=dense_only,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            attn_implementation=attn_implementation,
            dtype=self.dtype,
        )
        self.name: str = checkpoint.name
        self.path: Path = checkpoint.path
        self.tokenizer = checkpoint.tokenizer
        self.model = checkpoint.model.to(device=self.device, dtype=self.dtype)
        self.colbert_linear = None if checkpoint.colbert_linear is None else checkpoint.colbert_linear.to(self.device, self.dtype)
        self.sparse_linear = None if checkpoint.sparse_linear is None else checkpoint.sparse_linear.to(self.device, self.dtype)
        config = self.model.config
        self.dim: int = int(config.hidden_size)
        self.colbert_dim: int | None = None if self.colbert_linear is None else int(self.colbert_linear.out_features)
        self.vocab_size: int = int(config.vocab_size)
        offset = int(getattr(config, "pad_token_id", 1) or 0) + 1  # XLM-R positions start after padding_idx
        self.max_length: int = int(config.max_position_embeddings) - offset
        self.batch_tokens: int = batch_tokens or _BATCH_TOKENS.get(self.device.type, 8192)
        if self.batch_tokens < 2:
            raise InputValueError(f"batch_tokens must be >= 2, got {batch_tokens}")
        tok = self.tokenizer
        self._pad_id = int(tok.pad_token_id)
        self._eos_id = int(tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id)
        specials = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
        self._dropped_ids = torch.tensor(sorted(i for i in specials if i is not None), device=self.device)
        self._tokenizer_lock = threading.Lock()
        self._coalescer: Coalescer | None = None

    def __repr__(self) -> str:
        heads_ = "dense only" if self.dense_only else "dense+sparse+colbert"
        return f"M3Encoder({self.name!r}, device={self.device}, dtype={self.dtype}, {heads_})"

    # ------------------------------------------------------------------ sharing
    @classmethod
    def shared(
        cls,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        device: DeviceLike = None,
        dtype: DTypeLike = None,
        dense_only: bool = False,
        **kwargs: Any,
    ) -> M3Encoder:
        """The process-wide encoder for ``(model, device, dtype)``, loaded on first use.

        Every adapter resolves model names through this, so the weights are loaded once per
        process. A dense-only request reuses a full encoder if one is loaded. ``kwargs`` are
        passed to the constructor on first load (``revision``, ``cache_dir``, ...).
        """
        name = model_name_or_path if model_name_or_path is not None else os.environ.get("M3RAG_MODEL", DEFAULT_MODEL)
        raw = os.fspath(name)
        model_key = raw if looks_like_hub_id(raw) else os.path.realpath(os.path.expanduser(raw))
        resolved_device = resolve_device(device)
        resolved_dtype = resolve_dtype(dtype, resolved_device)
        base = (model_key, kwargs.get("revision"), str(resolved_device), resolved_dtype)
        key = (*base, dense_only)
        with cls._shared_lock:
            for candidate in ((*base, False), key):
                if candidate in cls._shared:
                    return cls._shared[candidate]
            key_lock = cls._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per key, even when many threads ask at once
            with cls._shared_lock:
                if key in cls._shared:
                    return cls._shared[key]
            encoder = cls(name, device=resolved_device, dtype=resolved_dtype, dense_only=dense_only, **kwargs)
            with cls._shared_lock:
                cls._shared[key] = encoder
            return encoder

    @classmethod
    def clear_shared(cls) -> None:
        """Forget every shared instance (their memory is freed once no one else holds them)."""
        with cls._shared_lock:
            cls._shared.clear()
            cls._key_locks.clear()

    # ------------------------------------------------------------------ facts
    @property
    def dense_only(self) -> bool:
        return self.sparse_linear is None

    @cached_property
    def fingerprint(self) -> str:
        """A short hex digest identifying the weights (config, tokenizer size, sampled tensors, heads)."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.model.config.to_dict(), sort_keys=True, default=str).encode())
        digest.update(str(len(self.tokenizer)).encode())
        modules = {"encoder": self.model, "colbert": self.colbert_linear, "sparse": self.sparse_linear}
        for prefix, module in modules.items():
            if module is None:
                continue
            for name, tensor in sorted(module.state_dict().items()):
                flat = tensor.detach().reshape(-1)
                sample = torch.cat([flat[:64], flat[-64:]]).float().cpu().numpy()
                digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
                digest.update(sample.tobytes())
        return digest.hexdigest()[:16]

    @property
    def identity(self) -> dict[str, Any]:
        """What an index needs to know it was built by the same model."""
        return {
            "name": self.name,
            "dim": self.dim,
            "colbert_dim": self.colbert_dim,
            "vocab_size": self.vocab_size,
            "fingerprint": self.fingerprint,
        }

    # ------------------------------------------------------------------ encoding
    def tokenize(self, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], np.ndarray]:
        """Token ids with ``<s> ... </s>``, cut to ``max_length`` keeping ``</s>``; and a
        ``bool [n]`` array telling which texts were cut."""
        if not texts:
            return [], np.zeros(0, dtype=bool)
        try:
            with self._tokenizer_lock:  # HF fast tokenizers are not safe to call from several threads
                ids: list[list[int]] = self.tokenizer(
                    list(texts),
                    add_special_tokens=True,
                    truncation=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    verbose=False,
                )["input_ids"]
        except TypeError:  # the tokenizer cannot take text that is not valid Unicode
            for i, text in enumerate(texts):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise InputValueError(f"texts[{i}] is not valid Unicode ({exc.reason} at position {exc.start})") from None
            raise
        truncated = np.fromiter((len(x) > max_length for x in ids), dtype=bool, count=len(ids))
        for i in np.flatnonzero(truncated).tolist():
            ids[i] = ids[i][: max_length - 1] + [self._eos_id]
        return ids, truncated

    @overload
    def encode(
        self,
        sentences: str,
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Item: ...
    @overload
    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Output: ...
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> M3Output | M3Item:
        """Encode texts in one forward pass per batch; a ``str`` gives an :class:`M3Item`.

        ``max_length`` (default 8192, the model's limit) counts tokens with ``<s>``/``</s>``;
        longer texts are truncated, flagged in ``truncated`` and reported with an
        :class:`M3TruncationWarning`. Batches are length-sorted and hold at most ``batch_size``
        texts and ``batch_tokens`` padded tokens. Heads whose output is not asked for do not run.
        """
        texts, single, options = self._prepare(
            sentences, batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens, show_progress_bar
        )
        coalescer = self._coalescer
        if coalescer is not None and 0 < len(texts) <= coalescer.max_texts:
            out = coalescer.submit(texts, **options).result()
        else:
            out = self._encode(texts, **options)
        return out.item(0) if single else out

    async def aencode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> Any:
        """:meth:`encode` for asyncio: the event loop never waits on the model. With coalescing on,
        concurrent calls share forward passes; otherwise the call runs in a worker thread."""
        texts, single, options = self._prepare(
            sentences, batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens, False
        )
        coalescer = self._coalescer
        if coalescer is not None and 0 < len(texts) <= coalescer.max_texts:
            out = await asyncio.wrap_future(coalescer.submit(texts, **options))
        else:
            out = await asyncio.to_thread(self._encode, texts, **options)
        return out.item(0) if single else out

    def _prepare(
        self,
        sentences: object,
        batch_size: int | None,
        max_length: int | None,
        return_dense: bool,
        return_sparse: bool,
        return_colbert_vecs: bool,
        batch_tokens: int | None,
        show_progress_bar: bool | None,
    ) -> tuple[list[str], bool, dict[str, Any]]:
        """Validate an encode call in the caller's thread: ``(texts, was a str, options)``."""
        texts, single = check_texts(sentences)
        options: dict[str, Any] = dict(
            batch_size=self.batch_size if batch_size is None else batch_size,
            max_length=self.passage_max_length if max_length is None else max_length,
            return_dense=bool(return_dense),
            return_sparse=bool(return_sparse),
            return_colbert_vecs=bool(return_colbert_vecs),
            batch_tokens=self.batch_tokens if batch_tokens is None else batch_tokens,
            show_progress_bar=show_progress_bar,
        )
        check_positive_int(options["batch_size"], "batch_size")
        check_positive_int(options["max_length"], "max_length", minimum=2)
        check_positive_int(options["batch_tokens"], "batch_tokens", minimum=2)
        if options["max_length"] > self.max_length:
            raise InputValueError(f"max_length={options['max_length']} exceeds the model's limit of {self.max_length} tokens")
        if (return_sparse or return_colbert_vecs) and self.dense_only:
            raise DenseOnlyError(f"{self.name} was loaded with dense_only=True: sparse and ColBERT outputs need the heads")
        if not (return_dense or return_sparse or return_colbert_vecs):
            raise InputValueError("nothing to return: set return_dense, return_sparse or return_colbert_vecs")
        return texts, single, options

    # ------------------------------------------------------------------ coalescing
    def enable_coalescing(self, window_ms: float = 2.0, max_texts: int = 64) -> None:
        """Gather concurrent small ``encode``/``aencode`` calls (at most ``max_texts`` texts each)
        into shared forward passes, waiting at most ``window_ms`` for company. Each caller gets the
        outputs it would get alone. Calls with more texts run directly."""
        check_positive_int(max_texts, "max_texts")
        if window_ms < 0:
            raise InputValueError(f"window_ms must be >= 0, got {window_ms}")
        self.disable_coalescing()
        self._coalescer = Coalescer(self._encode, window_ms=window_ms, max_texts=max_texts)

    def disable_coalescing(self) -> None:
        """Back to one forward pass per call (queued requests are served first)."""
        coalescer, self._coalescer = self._coalescer, None
        if coalescer is not None:
            coalescer.close()

    @property
    def coalescing(self) -> bool:
        return self._coalescer is not None

    def encode_queries(self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any:
        """:meth:`encode` with the query length limit (``query_max_length``, 512) by default."""
        return self.encode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    def encode_corpus(self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any:
        """:meth:`encode` with the passage length limit (``passage_max_length``, 8192) by default."""
        return self.encode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    async def aencode_queries(self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any:
        """:meth:`aencode` with the query length limit by default."""
        return await self.aencode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    async def aencode_corpus(self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> Any:
        """:meth:`aencode` with the passage length limit by default."""
        return await self.aencode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    def _encode(
        self,
        texts: list[str],
        *,
        batch_size: int,
        max_length: int,
        return_dense: bool,
        return_sparse: bool,
        return_colbert_vecs: bool,
        batch_tokens: int,
        show_progress_bar: bool | None,
    ) -> M3Output:
        n = len(texts)
        ids, truncated = self.tokenize(texts, max_length)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        if truncated.any():
            warnings.warn(
                f"{int(truncated.sum())} of {n} texts were longer than max_length={max_length} tokens and were "
                "truncated (see M3Output.truncated)",
                M3TruncationWarning,
                stacklevel=_caller_stacklevel(),
            )

        dense = np.zeros((n, self.dim), dtype=np.float32) if return_dense else None
        sparse_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        colbert_parts: list[tuple[np.ndarray, np.ndarray]] = []
        pending = deque(plan_batches(lengths, batch_size=batch_size, batch_tokens=batch_tokens))
        progress = tqdm(
            total=n, desc="Encoding", unit="text", delay=2.0,
            disable=(not show_progress_bar) if show_progress_bar is not None else None,
        )
        with progress, torch.inference_mode():
            while pending:
                batch = pending.popleft()
                try:
                    hidden, input_ids, mask = self._forward([ids[i] for i in batch.tolist()])
                except torch.cuda.OutOfMemoryError:
                    if len(batch) == 1:
                        raise
                    # Only on out-of-memory: free the cache, halve the budget and re-plan the rest.
                    torch.cuda.empty_cache()
                    batch_tokens = max(2, len(batch) * int(lengths[batch[0]]) // 2)
                    logger.warning("CUDA out of memory; retrying with batch_tokens=%d", batch_tokens)
                    rest = np.concatenate([batch, *pending])
                    pending = deque(rest[b] for b in plan_batches(lengths[rest], batch_size=batch_size, batch_tokens=batch_tokens))
                    continue
                if dense is not None:
                    dense[batch] = heads.dense_vectors(hidden).cpu().numpy()
                if return_sparse:
                    assert self.sparse_linear is not None
                    rows, cols, vals = heads.lexical_weights(
                        hidden, input_ids, mask, self.sparse_linear, self._dropped_ids, self.vocab_size
                    )
                    sparse_parts.append((batch[rows.cpu().numpy()], cols.cpu().numpy(), vals.cpu().numpy()))
                if return_colbert_vecs:
                    assert self.colbert_linear is not None
                    vecs, _ = heads.colbert_vectors(hidden, mask, self.colbert_linear)
                    colbert_parts.append((batch, vecs.cpu().numpy()))
                progress.update(len(batch))

        sparse = self._assemble_sparse(n, sparse_parts) if return_sparse else None
        colbert, offsets = self._assemble_colbert(lengths, colbert_parts) if return_colbert_vecs else (None, None)
        return M3Output(dense, sparse, colbert, offsets, lengths, truncated)

    def _forward(self, batch_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pad one batch (right padding), run the encoder; returns hidden ``[b, L, H]``, ids, mask."""
        lengths = np.fromiter(map(len, batch_ids), dtype=np.int64, count=len(batch_ids))
        mask_np = np.arange(int(lengths.max()))[None, :] < lengths[:, None]
        ids_np = np.full(mask_np.shape, self._pad_id, dtype=np.int64)
        ids_np[mask_np] = np.fromiter((t for row in batch_ids for t in row), dtype=np.int64, count=int(lengths.sum()))
        input_ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np.astype(np.int64))
        if self.device.type == "cuda":
            input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
            mask = mask.pin_memory().to(self.device, non_blocking=True)
        elif self.device.type != "cpu":
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden, input_ids, mask

    def _assemble_sparse(self, n: int, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> sp.csr_array:
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        cols = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        vals = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.float32)
        matrix = sp.csr_array((vals, (rows, cols)), shape=(n, self.vocab_size), dtype=np.float32)
        matrix.sort_indices()
        return matrix

    def _assemble_colbert(self, lengths: np.ndarray, parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Put per-batch ColBERT rows into input order: ``[sum(len_i - 1), C]`` and offsets ``[n + 1]``."""
        counts = lengths - 1
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        assert self.colbert_dim is not None
        flat = np.empty((int(offsets[-1]), self.colbert_dim), dtype=np.float32)
        for batch, vecs in parts:
            batch_counts = counts[batch]
            src_starts = np.cumsum(batch_counts) - batch_counts
            dest = np.arange(len(vecs)) + np.repeat(offsets[batch] - src_starts, batch_counts)
            flat[dest] = vecs
        return flat, offsets

    # ------------------------------------------------------------------ scoring
    def compute_lexical_matching_score(
        self, lexical_weights_1: Any, lexical_weights_2: Any
    ) -> float | np.ndarray:
        """Lexical score(s): dict x dict -> float, list x list -> ``[m, n]`` array."""
        return scoring.lexical_matching_score(lexical_weights_1, lexical_weights_2)

    def colbert_score(self, q_reps: np.ndarray, p_reps: np.ndarray) -> float:
        """ColBERT score of one query ``[Lq, d]`` and one passage ``[Lp, d]``, as a float."""
        return scoring.colbert_score(q_reps, p_reps)

    def convert_id_to_token(self, lexical_weights: Mapping[Any, float] | Sequence[Mapping[Any, float]]) -> Any:
        """``{token_id: w}`` (or a list of them) to ``{token_text: w}``, as FlagEmbedding does."""
        single = isinstance(lexical_weights, Mapping)
        items = [lexical_weights] if single else list(lexical_weights)  # type: ignore[list-item]
        converted = []
        for weights in items:
            keys = [int(k) for k in weights]
            tokens = self.tokenizer.batch_decode([[k] for k in keys]) if keys else []
            converted.append(dict(zip(tokens, weights.values())))
        return converted[0] if single else converted

    def compute_score(
        self,
        sentence_pairs: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        weights_for_different_modes: Sequence[float] | None = None,
    ) -> dict[str, Any] | list[Any]:
        """Score ``(query, passage)`` pairs in every mode, as ``BGEM3FlagModel.compute_score``.

        Returns ``{"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}`` with a
        float per mode for one pair, a list of floats for a list of pairs, and ``[]`` for ``[]``.
        ``weights_for_different_modes`` is ``[w_dense, w_sparse, w_colbert]`` (default ``[1, 1, 1]``):
        ``sparse+dense = (w_s*s + w_d*d) / (w_s + w_d)``, ``colbert+sparse+dense`` likewise over all
        three. Each distinct text is encoded once. The ColBERT score ignores padding (see
        :mod:`m3rag.scoring`).
        """
        if isinstance(sentence_pairs, list | tuple) and len(sentence_pairs) == 0:
            return []
        single = isinstance(sentence_pairs, list | tuple) and len(sentence_pairs) == 2 and all(isinstance(s, str) for s in sentence_pairs)
        pairs = [sentence_pairs] if single else list(sentence_pairs)
        for i, pair in enumerate(pairs):
            if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InputTypeError(f"sentence_pairs[{i}] must be a (query, passage) pair of str")
            for text in pair:
                if not isinstance(text, str):
                    raise InputTypeError(f"sentence_pairs[{i}] holds {type(text).__name__}, not str")
        w_d, w_s, w_c = scoring.check_mode_weights(weights_for_different_modes)
        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        kwargs: dict[str, Any] = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
        q_out = self.encode(queries, batch_size, self.query_max_length if max_query_length is None else max_query_length, **kwargs)
        p_out = self.encode(passages, batch_size, self.passage_max_length if max_passage_length is None else max_passage_length, **kwargs)
        q_pos = {t: i for i, t in enumerate(queries)}
        p_pos = {t: i for i, t in enumerate(passages)}
        qi = np.array([q_pos[q] for q, _ in pairs])
        pi = np.array([p_pos[p] for _, p in pairs])
        assert q_out.dense is not None and p_out.dense is not None and q_out.sparse is not None and p_out.sparse is not None
        assert q_out.colbert_vecs is not None and p_out.colbert_vecs is not None
        dense = scoring.dense_pair_scores(q_out.dense[qi], p_out.dense[pi])
        sparse = scoring.lexical_pair_scores(q_out.sparse[qi], p_out.sparse[pi])
        colbert = scoring.colbert_pair_scores([q_out.colbert_vecs[i] for i in qi], [p_out.colbert_vecs[i] for i in pi])
        scores = {
            "colbert": colbert,
            "sparse": sparse,
            "dense": dense,
            "sparse+dense": (w_s * sparse + w_d * dense) / (w_s + w_d),
            "colbert+sparse+dense": (w_c * colbert + w_s * sparse + w_d * dense) / (w_d + w_s + w_c),
        }
        return {k: float(v[0]) for k, v in scores.items()} if single else {k: v.tolist() for k, v in scores.items()}


def resolve_encoder(
    encoder: M3Encoder | None = None,
    model_name: str | os.PathLike[str] | None = None,
    *,
    device: DeviceLike = None,
    dtype: DTypeLike = None,
) -> M3Encoder:
    """The encoder a component should use: ``encoder`` if given, else the shared instance of
    ``model_name`` (default ``$M3RAG_MODEL`` or ``BAAI/bge-m3``). Framework adapters call this so
    that every component naming the same model uses one set of weights."""
    if encoder is not None:
        if not isinstance(encoder, M3Encoder):
            raise InputTypeError(f"encoder must be an M3Encoder, got {type(encoder).__name__}")
        return encoder
    return M3Encoder.shared(model_name, device=device, dtype=dtype)
