"""Dense BGE embedders (bge-*-en/zh v1 and v1.5, and any BERT / XLM-R checkpoint in that layout):
FlagEmbedding's ``FlagModel`` on m3rag's shared infrastructure."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from m3rag.encoder.base import TransformerModel
from m3rag.encoder.device import DeviceLike, DTypeLike
from m3rag.encoder.instructions import FAMILY, InstructionArg, apply_instruction, check_format, check_instruction, family_query_instruction
from m3rag.encoder.registry import default_model
from m3rag.errors import CheckpointError, InputTypeError, InputValueError
from m3rag.validation import check_positive_int, check_texts

__all__ = ["BGEEncoder", "Pooling"]

Pooling = Literal["cls", "mean"]
_POOLINGS: tuple[Pooling, ...] = ("cls", "mean")


class BGEEncoder(TransformerModel[np.ndarray]):
    """A dense BGE embedder: one L2-normalised vector per text, as FlagEmbedding's ``FlagModel``.

    ``BGEEncoder(model_name_or_path=None, *, query_instruction_for_retrieval=FAMILY, ...)`` loads a hub
    id or a local directory holding a BERT or XLM-R encoder (``BertModel`` / ``XLMRobertaModel``
    keys); the default model is ``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``.

    - Pooling: ``pooling_method`` ``"cls"`` (every bge model) or ``"mean"`` (masked mean, e5/gte);
      by default what the checkpoint's sentence-transformers ``1_Pooling/config.json`` says, else CLS.
    - ``encode_queries`` prepends ``query_instruction_for_retrieval`` with
      ``query_instruction_format`` (FlagEmbedding's ``"{}{}"``: plain concatenation). Its default,
      :data:`~m3rag.encoder.instructions.FAMILY`, is the model card's instruction found from the
      model name (bge-*-en[-v1.5]: ``"Represent this sentence for searching relevant passages: "``,
      bge-*-zh[-v1.5]: ``"为这个句子生成表示以用于检索相关文章："``), none for any other name;
      ``None`` means no instruction, as in FlagModel. ``encode_corpus`` prepends
      ``passage_instruction_for_retrieval`` (default none); ``encode`` never adds one unless asked.
    - Inputs are cut at ``query_max_length`` / ``passage_max_length`` (512) tokens, specials
      included, with a :class:`~m3rag.encoder.base.TruncationWarning`.

    Equal to ``FlagModel(path, use_fp16=False, ...)`` to 1e-5 in float32. FlagModel's default
    ``use_fp16=True`` on a CPU computes in float32 with fp16-rounded weights (about 1e-3 off); here
    ``use_fp16=True`` means float16 on a GPU and float32 on a CPU. Device and dtype policy, batching
    (length-sorted, ``batch_size`` texts and ``batch_tokens`` padded tokens at most), coalescing and
    :meth:`shared` are m3rag's, as for :class:`~m3rag.M3Encoder`.
    """

    model_class = "AutoModel"
    query_max_length: int = 512
    passage_max_length: int = 512

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        normalize_embeddings: bool = True,
        pooling_method: Pooling | None = None,
        query_instruction_for_retrieval: InstructionArg = FAMILY,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_retrieval: str | None = None,
        passage_instruction_format: str = "{}{}",
        batch_size: int | None = None,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
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
        if pooling_method is not None and pooling_method not in _POOLINGS:
            raise InputValueError(f"pooling_method must be 'cls' or 'mean' (or None: the checkpoint's), got {pooling_method!r}")
        if not isinstance(normalize_embeddings, bool):
            raise InputTypeError(f"normalize_embeddings must be a bool, got {type(normalize_embeddings).__name__}")
        self.query_instruction_format = check_format(query_instruction_format, "query_instruction_format")
        self.passage_instruction_format = check_format(passage_instruction_format, "passage_instruction_format")
        self.passage_instruction_for_retrieval = check_instruction(passage_instruction_for_retrieval, "passage_instruction_for_retrieval")
        if query_instruction_for_retrieval is not FAMILY:
            check_instruction(query_instruction_for_retrieval, "query_instruction_for_retrieval")
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
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None  # the BAAI files ship BERT's pooler; FlagModel never uses it
        self.normalize_embeddings: bool = normalize_embeddings
        self.pooling_method: Pooling = pooling_method or _checkpoint_pooling(self.path)
        self.query_instruction_for_retrieval: str | None = (
            family_query_instruction(self.name) if query_instruction_for_retrieval is FAMILY else query_instruction_for_retrieval
        )
        self.dim: int = int(self.config.hidden_size)
        """Width of the vectors."""
        if batch_size is not None:
            self.batch_size = check_positive_int(batch_size, "batch_size")
        if query_max_length is not None:
            self.query_max_length = self._check_batching(None, query_max_length, None, 0)["max_length"]
        if passage_max_length is not None:
            self.passage_max_length = self._check_batching(None, passage_max_length, None, 0)["max_length"]

    @classmethod
    def default_model(cls) -> str:
        """``$M3RAG_DENSE_MODEL`` or ``BAAI/bge-small-en-v1.5``."""
        return default_model("dense")

    def _extra_files(self) -> tuple[str, ...]:
        return ("modules.json", "1_Pooling/config.json")  # sentence-transformers' pooling declaration

    @classmethod
    def _share_key(cls, options: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
        return cls._all_options_key(options), ()  # every option changes what the instance computes by default

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, device={self.device}, dtype={self.dtype}, pooling={self.pooling_method!r})"

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        instruction: str | None = None,
        instruction_format: str = "{}{}",
        normalize_embeddings: bool | None = None,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        """Embed texts: ``float32 [n, dim]`` in input order (``[dim]`` for a single ``str``).

        ``instruction`` (default none) is prepended with ``instruction_format``; ``max_length``
        (default ``passage_max_length``) counts tokens with the specials. ``normalize_embeddings``
        (default the encoder's) L2-normalises the vectors.
        """
        texts, single, options = self._prepare(
            sentences,
            batch_size,
            max_length,
            self.passage_max_length,
            instruction,
            instruction_format,
            normalize_embeddings,
            batch_tokens,
            show_progress_bar,
        )
        out = self._call(texts, options)
        return out[0] if single else out

    async def aencode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,
        max_length: int | None = None,
        *,
        instruction: str | None = None,
        instruction_format: str = "{}{}",
        normalize_embeddings: bool | None = None,
        batch_tokens: int | None = None,
    ) -> np.ndarray:
        """:meth:`encode` for asyncio: the event loop never waits on the model."""
        texts, single, options = self._prepare(
            sentences,
            batch_size,
            max_length,
            self.passage_max_length,
            instruction,
            instruction_format,
            normalize_embeddings,
            batch_tokens,
            False,
        )
        out = await self._acall(texts, options)
        return out[0] if single else out

    def encode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode` with ``query_instruction_for_retrieval`` and ``query_max_length``."""
        return self.encode(queries, batch_size, self.query_max_length if max_length is None else max_length, **self._query_kwargs(kwargs))

    def encode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode` with ``passage_instruction_for_retrieval`` (default none) and ``passage_max_length``."""
        return self.encode(corpus, batch_size, self.passage_max_length if max_length is None else max_length, **self._corpus_kwargs(kwargs))

    async def aencode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_queries` for asyncio."""
        return await self.aencode(
            queries, batch_size, self.query_max_length if max_length is None else max_length, **self._query_kwargs(kwargs)
        )

    async def aencode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_corpus` for asyncio."""
        return await self.aencode(
            corpus, batch_size, self.passage_max_length if max_length is None else max_length, **self._corpus_kwargs(kwargs)
        )

    def _query_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"instruction": self.query_instruction_for_retrieval, "instruction_format": self.query_instruction_format, **kwargs}

    def _corpus_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {"instruction": self.passage_instruction_for_retrieval, "instruction_format": self.passage_instruction_format, **kwargs}

    def _prepare(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None,
        max_length: int | None,
        default_max_length: int,
        instruction: str | None,
        instruction_format: str,
        normalize_embeddings: bool | None,
        batch_tokens: int | None,
        show_progress_bar: bool | None,
    ) -> tuple[list[str], bool, dict[str, Any]]:
        """Validate a call in the caller's thread; returns the texts with their instruction."""
        texts, single = check_texts(sentences, "sentences")
        instruction = check_instruction(instruction, "instruction")
        check_format(instruction_format, "instruction_format")
        if normalize_embeddings is not None and not isinstance(normalize_embeddings, bool):
            raise InputTypeError(f"normalize_embeddings must be a bool, got {type(normalize_embeddings).__name__}")
        options: dict[str, Any] = self._check_batching(batch_size, max_length, batch_tokens, default_max_length)
        options.update(
            normalize=self.normalize_embeddings if normalize_embeddings is None else normalize_embeddings,
            show_progress_bar=show_progress_bar,
        )
        if instruction is not None:
            texts = [apply_instruction(instruction, t, instruction_format) for t in texts]
        return texts, single, options

    def _process(
        self, texts: list[str], *, batch_size: int, max_length: int, batch_tokens: int, normalize: bool, show_progress_bar: bool | None
    ) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        ids, truncated = self.tokenize(texts, max_length)
        self._warn_truncated(truncated, max_length, "texts")
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)

        def step(batch: np.ndarray) -> None:
            output, inputs = self._forward([ids[i] for i in batch.tolist()])
            vectors = self._pool(output.last_hidden_state, inputs["attention_mask"])
            if normalize:
                vectors = F.normalize(vectors, dim=-1)
            out[batch] = vectors.cpu().numpy()

        self._run_batches(lengths, step, batch_size=batch_size, batch_tokens=batch_tokens, show_progress_bar=show_progress_bar)
        return out

    def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``float32 [b, H]``: the first token's state (``cls``) or the masked mean (``mean``)."""
        hidden = hidden.float()
        if self.pooling_method == "cls":
            return hidden[:, 0]
        summed = torch.sum(hidden * attention_mask.unsqueeze(-1).float(), dim=1)
        return summed / attention_mask.sum(dim=1, keepdim=True).float()


def _checkpoint_pooling(directory: Path) -> Pooling:
    """The pooling sentence-transformers' files declare (``modules.json`` -> its Pooling module's
    ``config.json``): ``"mean"`` for mean-token pooling, ``"cls"`` for CLS or when nothing is declared."""
    pooling_dir = directory / "1_Pooling"
    modules_path = directory / "modules.json"
    try:
        if modules_path.is_file():
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
            for module in modules if isinstance(modules, list) else []:
                if isinstance(module, dict) and str(module.get("type", "")).endswith(".Pooling"):
                    pooling_dir = directory / str(module.get("path", "1_Pooling"))
        config_path = pooling_dir / "config.json"
        if not config_path.is_file():
            return "cls"
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"sentence-transformers pooling files in {directory} are unreadable: {exc}", directory) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{pooling_dir / 'config.json'} does not hold a JSON object", pooling_dir / "config.json")
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token") or not any(str(k).startswith("pooling_mode") and v for k, v in config.items()):
        return "cls"
    modes = sorted(k for k, v in config.items() if str(k).startswith("pooling_mode") and v)
    raise CheckpointError(
        f"{pooling_dir / 'config.json'} declares {', '.join(modes)}; BGEEncoder pools by CLS or mean (pass pooling_method= to override)",
        pooling_dir / "config.json",
    )
