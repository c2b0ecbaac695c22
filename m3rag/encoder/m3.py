"""The shared M3 encoder: one forward pass, three representations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import scipy.sparse as sp
import torch

from m3rag.encoder import heads
from m3rag.encoder.base import TransformerModel
from m3rag.encoder.checkpoint import M3_HEAD_FILES, Heads, load_heads
from m3rag.encoder.device import DeviceLike, DTypeLike
from m3rag.encoder.m3_scoring import M3ScoringMixin
from m3rag.encoder.output import M3Item, M3Output
from m3rag.encoder.registry import default_model
from m3rag.encoder.truncation import TruncationWarning
from m3rag.errors import DenseOnlyError, InputValueError
from m3rag.validation import check_positive_int, check_texts

if TYPE_CHECKING:
    from m3rag.serve.client import RemoteM3Encoder

__all__ = ["M3Encoder", "M3TruncationWarning"]

M3TruncationWarning = TruncationWarning
"""Some texts were longer than ``max_length`` tokens and were truncated (see ``M3Output.truncated``)."""


class M3Encoder(M3ScoringMixin, TransformerModel[M3Output]):
    """A BGE-M3 checkpoint that gives dense, sparse and ColBERT outputs from one forward pass.

    ``M3Encoder(model_name_or_path=None, *, device=None, dtype=None, dense_only=False)`` loads a
    hub id (through the Hugging Face cache) or a local directory in the BAAI/bge-m3 layout; the
    default model is ``$M3RAG_MODEL`` or ``BAAI/bge-m3``. Device: CUDA > MPS > CPU; dtype: float16
    on GPU, float32 on CPU (``"bfloat16"`` selectable, ``"auto"`` the fast policy). FlagEmbedding's
    ``use_fp16``, ``devices``, ``batch_size``, ``query_max_length`` and ``passage_max_length`` are
    accepted too. ``dense_only=True`` loads without the sparse and ColBERT heads. Use
    :meth:`shared` to get the process-wide instance instead of loading the weights again.
    Instances are safe to use from several threads.

    Example::

        enc = M3Encoder.shared("BAAI/bge-m3")
        out = enc.encode(["What is BGE M3?"], return_sparse=True, return_colbert_vecs=True)
        out.dense.shape, out.lexical_weights[0], out.colbert_vecs[0].shape
    """

    query_max_length: int = 512
    passage_max_length: int = 8192

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
        use_fp16: bool | None = None,
        devices: Any = None,
        batch_size: int | None = None,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
    ) -> None:
        self._dense_only = bool(dense_only)
        super().__init__(
            model_name_or_path,
            device=device,
            dtype=dtype,
            batch_tokens=batch_tokens,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            attn_implementation=attn_implementation,
            use_fp16=use_fp16,
            devices=devices,
        )
        if self.model.config.model_type not in ("xlm-roberta", "roberta"):
            raise InputValueError(f"{self.path} holds a {self.model.config.model_type!r} model; BGE-M3 is an XLM-RoBERTa encoder")
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # bge-m3 ships an unused pooler: loaded (no key warnings), then dropped
        self.colbert_linear: torch.nn.Linear | None = None
        self.sparse_linear: torch.nn.Linear | None = None
        if self._heads is not None:
            self.colbert_linear = self._heads.colbert.to(self.device, self.dtype)
            self.sparse_linear = self._heads.sparse.to(self.device, self.dtype)
        self._heads = None
        self.dim: int = int(self.config.hidden_size)
        self.colbert_dim: int | None = None if self.colbert_linear is None else int(self.colbert_linear.out_features)
        if batch_size is not None:
            self.batch_size = check_positive_int(batch_size, "batch_size")
        if query_max_length is not None:
            self.query_max_length = self._check_batching(None, query_max_length, None, 0)["max_length"]
        if passage_max_length is not None:
            self.passage_max_length = self._check_batching(None, passage_max_length, None, 0)["max_length"]
        tok = self.tokenizer
        self._eos_id = int(tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id)
        specials = {tok.cls_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id}
        self._dropped_ids = torch.tensor(sorted(i for i in specials if i is not None), device=self.device)

    @classmethod
    def remote(cls, url: str, api_key: str | None = None, **kwargs: Any) -> RemoteM3Encoder:
        """The shared :class:`~m3rag.serve.client.RemoteM3Encoder` of the ``m3rag serve`` at ``url``."""
        from m3rag.serve.client import RemoteM3Encoder

        return RemoteM3Encoder.shared(url, api_key=api_key, **kwargs)

    @classmethod
    def default_model(cls) -> str:
        """``$M3RAG_MODEL`` or ``BAAI/bge-m3``."""
        return default_model()

    def _extra_files(self) -> tuple[str, ...]:
        return () if self._dense_only else M3_HEAD_FILES

    def _load_heads(self, directory: Path) -> Heads | None:
        return None if self._dense_only else load_heads(directory, int(self.config.hidden_size))

    @classmethod
    def _share_key(cls, options: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
        own, _ = super()._share_key(options)
        dense_only = bool(options.get("dense_only", False))
        # a dense-only request is served by a full encoder of the same model when one is loaded
        return (own, dense_only), (((own, False),) if dense_only else ())

    def __repr__(self) -> str:
        heads_ = "dense only" if self.dense_only else "dense+sparse+colbert"
        return f"M3Encoder({self.name!r}, device={self.device}, dtype={self.dtype}, {heads_})"

    # ------------------------------------------------------------------ facts
    @property
    def dense_only(self) -> bool:
        return self.sparse_linear is None

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
    @overload
    def encode(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]; the str overload wins
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
        texts, single = check_texts(sentences)
        options = self._options(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens, show_progress_bar)
        out = self._call(texts, options)
        return out.item(0) if single else out

    @overload
    async def aencode(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]; the str overload wins
        self,
        sentences: str,
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> M3Item: ...
    @overload
    async def aencode(
        self,
        sentences: Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        batch_tokens: int | None = None,
    ) -> M3Output: ...
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
    ) -> M3Output | M3Item:
        """:meth:`encode` for asyncio: the event loop never waits on the model. With coalescing on,
        concurrent calls share forward passes; otherwise the call runs in a worker thread."""
        texts, single = check_texts(sentences)
        options = self._options(batch_size, max_length, return_dense, return_sparse, return_colbert_vecs, batch_tokens, False)
        out = await self._acall(texts, options)
        return out.item(0) if single else out

    def _options(
        self,
        batch_size: int | None,
        max_length: int | None,
        return_dense: bool,
        return_sparse: bool,
        return_colbert_vecs: bool,
        batch_tokens: int | None,
        show_progress_bar: bool | None,
    ) -> dict[str, Any]:
        """Validate an encode call in the caller's thread."""
        options: dict[str, Any] = self._check_batching(batch_size, max_length, batch_tokens, self.passage_max_length)
        options.update(
            return_dense=bool(return_dense),
            return_sparse=bool(return_sparse),
            return_colbert_vecs=bool(return_colbert_vecs),
            show_progress_bar=show_progress_bar,
        )
        if (return_sparse or return_colbert_vecs) and self.dense_only:
            raise DenseOnlyError(f"{self.name} was loaded with dense_only=True: sparse and ColBERT outputs need the heads")
        if not (return_dense or return_sparse or return_colbert_vecs):
            raise InputValueError("nothing to return: set return_dense, return_sparse or return_colbert_vecs")
        return options

    @overload
    def encode_queries(self, queries: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    def encode_queries(
        self, queries: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    def encode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`encode` with the query length limit (``query_max_length``, 512) by default."""
        return self.encode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    @overload
    def encode_corpus(self, corpus: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    def encode_corpus(
        self, corpus: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    def encode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`encode` with the passage length limit (``passage_max_length``, 8192) by default."""
        return self.encode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    @overload
    async def aencode_queries(
        self, queries: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Item: ...
    @overload
    async def aencode_queries(
        self, queries: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    async def aencode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`aencode` with the query length limit by default."""
        return await self.aencode(queries, batch_size, self.query_max_length if max_length is None else max_length, **kwargs)

    @overload
    async def aencode_corpus(self, corpus: str, batch_size: int | None = None, max_length: int | None = None, **kwargs: Any) -> M3Item: ...
    @overload
    async def aencode_corpus(
        self, corpus: Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output: ...
    async def aencode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> M3Output | M3Item:
        """:meth:`aencode` with the passage length limit by default."""
        return await self.aencode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **kwargs)

    def _process(
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
        self._warn_truncated(truncated, max_length, "texts")
        dense = np.zeros((n, self.dim), dtype=np.float32) if return_dense else None
        sparse_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        colbert_parts: list[tuple[np.ndarray, np.ndarray]] = []

        def step(batch: np.ndarray) -> None:
            output, inputs = self._forward([ids[i] for i in batch.tolist()])
            hidden = output.last_hidden_state
            mask = inputs["attention_mask"]
            vectors = heads.dense_vectors(hidden) if dense is not None else None
            lexical = (
                heads.lexical_weights(hidden, inputs["input_ids"], mask, self.sparse_linear, self._dropped_ids, self.vocab_size)
                if return_sparse
                else None
            )
            colbert = heads.colbert_vectors(hidden, mask, self.colbert_linear)[0] if return_colbert_vecs else None
            # record only once every device computation of this batch succeeded (out-of-memory retries)
            if vectors is not None:
                dense[batch] = vectors.cpu().numpy()  # type: ignore[index]
            if lexical is not None:
                rows, cols, vals = lexical
                sparse_parts.append((batch[rows.cpu().numpy()], cols.cpu().numpy(), vals.cpu().numpy()))
            if colbert is not None:
                colbert_parts.append((batch, colbert.cpu().numpy()))

        self._run_batches(lengths, step, batch_size=batch_size, batch_tokens=batch_tokens, show_progress_bar=show_progress_bar)
        sparse = self._assemble_sparse(n, sparse_parts) if return_sparse else None
        colbert, offsets = self._assemble_colbert(lengths, colbert_parts) if return_colbert_vecs else (None, None)
        return M3Output(dense, sparse, colbert, offsets, lengths, truncated)

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
        flat = np.empty((int(offsets[-1]), self.colbert_dim or 0), dtype=np.float32)
        for batch, vecs in parts:
            batch_counts = counts[batch]
            src_starts = np.cumsum(batch_counts) - batch_counts
            dest = np.arange(len(vecs)) + np.repeat(offsets[batch] - src_starts, batch_counts)
            flat[dest] = vecs
        return flat, offsets
