"""LLM-Embedder (BAAI/llm-embedder): a BERT embedder with a query and a key instruction per
retrieval-augmented-LLM task, as FlagEmbedding 1.2's ``LLMEmbedder``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from m3rag.encoder.dense import BGEEncoder, Pooling
from m3rag.encoder.device import DeviceLike, DTypeLike
from m3rag.encoder.instructions import LLM_EMBEDDER_INSTRUCTIONS, llm_embedder_instruction
from m3rag.encoder.registry import default_model
from m3rag.errors import InputTypeError

__all__ = ["LLMEmbedder"]


class LLMEmbedder(BGEEncoder):
    """LLM-Embedder: ``encode_queries(queries, task=...)`` and ``encode_keys(keys, task=...)`` prepend
    the task's query or key instruction; CLS pooling, L2-normalised ``float32`` vectors.

    Tasks (:data:`~m3rag.encoder.instructions.LLM_EMBEDDER_TASKS`): ``qa`` (question answering),
    ``convsearch`` (conversational search), ``chat`` (long conversations), ``lrlm`` (long-range
    language modelling), ``icl`` (in-context examples) and ``tool`` (tool retrieval); an unknown
    name raises :class:`~m3rag.UnknownTaskError`. A conversation (``convsearch``, ``chat``) is one
    string: join its turns before encoding. Queries are cut at 256 tokens, keys at 512.

    Equal to FlagEmbedding 1.2.11's ``LLMEmbedder`` (removed after the 1.2 series) to 1e-5 in
    float32. The default model is ``$M3RAG_LLM_EMBEDDER_MODEL`` or ``BAAI/llm-embedder``; the rest
    (device, dtype, batching, coalescing, :meth:`shared`) is :class:`BGEEncoder`'s.
    """

    instructions = LLM_EMBEDDER_INSTRUCTIONS
    """``{task: {"query": ..., "key": ...}}``, FlagEmbedding's table."""
    query_max_length: int = 256
    passage_max_length: int = 512

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        pooling_method: Pooling = "cls",
        normalize_embeddings: bool = True,
        batch_size: int | None = None,
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
        super().__init__(
            model_name_or_path,
            normalize_embeddings=normalize_embeddings,
            pooling_method=pooling_method,
            query_instruction_for_retrieval=None,
            batch_size=batch_size,
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

    @classmethod
    def default_model(cls) -> str:
        """``$M3RAG_LLM_EMBEDDER_MODEL`` or ``BAAI/llm-embedder``."""
        return default_model("llm-embedder")

    def encode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """Queries with ``task``'s query instruction, cut at ``max_length`` (default 256) tokens:
        ``float32 [n, dim]`` (``[dim]`` for one ``str``)."""
        instruction = self._instruction(queries, task, "query")
        return self.encode(
            queries, batch_size, self.query_max_length if max_length is None else max_length, instruction=instruction, **kwargs
        )

    def encode_keys(
        self, keys: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """Keys (passages, past dialogue, examples, tool descriptions) with ``task``'s key
        instruction, cut at ``max_length`` (default 512) tokens: ``float32 [n, dim]``."""
        instruction = self._instruction(keys, task, "key")
        return self.encode(
            keys, batch_size, self.passage_max_length if max_length is None else max_length, instruction=instruction, **kwargs
        )

    def encode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_keys` (the corpus side of retrieval)."""
        return self.encode_keys(corpus, batch_size, max_length, task=task, **kwargs)

    async def aencode_queries(
        self, queries: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_queries` for asyncio."""
        instruction = self._instruction(queries, task, "query")
        return await self.aencode(
            queries, batch_size, self.query_max_length if max_length is None else max_length, instruction=instruction, **kwargs
        )

    async def aencode_keys(
        self, keys: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_keys` for asyncio."""
        instruction = self._instruction(keys, task, "key")
        return await self.aencode(
            keys, batch_size, self.passage_max_length if max_length is None else max_length, instruction=instruction, **kwargs
        )

    async def aencode_corpus(
        self, corpus: str | Sequence[str], batch_size: int | None = None, max_length: int | None = None, *, task: str = "qa", **kwargs: Any
    ) -> np.ndarray:
        """:meth:`encode_corpus` for asyncio."""
        return await self.aencode_keys(corpus, batch_size, max_length, task=task, **kwargs)

    @staticmethod
    def _instruction(texts: object, task: str, side: str) -> str:
        instruction = llm_embedder_instruction(task, "query" if side == "query" else "key")
        if not isinstance(texts, str) and isinstance(texts, Sequence):
            for i, text in enumerate(texts):
                if isinstance(text, Sequence) and not isinstance(text, str) and all(isinstance(t, str) for t in text):
                    raise InputTypeError(
                        f"{'queries' if side == 'query' else 'keys'}[{i}] is a list of turns; LLM-Embedder takes each "
                        f"{'conversation' if task in ('convsearch', 'chat') else 'text'} as one string (join the turns, e.g. with ' ')"
                    )
        return instruction
