"""Cross-encoder rerankers (bge-reranker-base/large, bge-reranker-v2-m3): one relevance logit per
(query, passage) pair, as FlagEmbedding's ``FlagReranker``, on m3rag's shared infrastructure.

Pair truncation is FlagReranker's, at the token-id level: the query is cut to ``query_max_length``
tokens (default ``max_length * 3 // 4``), the passage to ``max_length``, then the passage's tail is
dropped until ``specials + query + passage`` fits ``max_length``. That is what FlagReranker computes
under transformers 4 (``tokenizer.prepare_for_model``), and what 1.2.11 computed for every pair that
fits. Under transformers 5, whose fast tokenizers lost ``prepare_for_model``, FlagReranker 1.4.2
decodes the cut ids back to text and tokenizes the pair again; the round trip changes the ids when
an ``<unk>`` sits inside a word (decoded as the literal ``"<unk>"``, which then starts a new word)
or when the query cut leaves a lone ``"▁"`` piece, and then its scores differ from these (by up to
0.8 on a test checkpoint). m3rag keeps the id-level truncation on every transformers version.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3rag.encoder.base import TransformerModel
from m3rag.encoder.device import DeviceLike, DTypeLike
from m3rag.encoder.instructions import apply_instruction, check_format, check_instruction
from m3rag.encoder.registry import default_model
from m3rag.errors import CheckpointError, InputTypeError, InputValueError, ModelKindError
from m3rag.validation import check_pairs, check_positive_int

__all__ = ["BGEReranker", "PairTemplate", "sigmoid"]


def sigmoid(scores: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float64, FlagReranker's ``normalize=True``."""
    return 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its specials around a pair, read from the tokenizer itself:
    ``prefix + A + middle + B + suffix`` (``[CLS] A [SEP] B [SEP]`` for BERT, ``<s> A </s></s> B </s>``
    for XLM-R) and the token type of every part (``None`` when the model takes no token types)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[tuple[int, ...], int, tuple[int, ...], int, tuple[int, ...]] | None

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def of(cls, tokenizer: Any) -> PairTemplate:
        """Probe ``tokenizer`` with a pair of one-token texts."""
        first = tokenizer("a", add_special_tokens=False)["input_ids"]
        second = tokenizer("b", add_special_tokens=False)["input_ids"]
        with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        pair = tokenizer("a", "b", return_token_type_ids=with_types)
        ids, types = list(pair["input_ids"]), list(pair["token_type_ids"]) if with_types else None
        a_at = next((i for i in range(len(ids)) if ids[i : i + len(first)] == first), -1)
        b_at = next((i for i in range(a_at + len(first), len(ids)) if ids[i : i + len(second)] == second), -1) if a_at >= 0 else -1
        if a_at < 0 or b_at < 0 or not first or not second:
            raise CheckpointError(f"cannot find where {type(tokenizer).__name__} puts a text pair's special tokens (got {ids})")
        a_end, b_end = a_at + len(first), b_at + len(second)
        template = cls(
            prefix=tuple(ids[:a_at]),
            middle=tuple(ids[a_end:b_at]),
            suffix=tuple(ids[b_end:]),
            types=None
            if types is None
            else (tuple(types[:a_at]), types[a_at], tuple(types[a_end:b_at]), types[b_at], tuple(types[b_end:])),
        )
        expected = tokenizer.num_special_tokens_to_add(pair=True)
        if template.num_special != expected:
            raise CheckpointError(
                f"{type(tokenizer).__name__}: found {template.num_special} special tokens around a pair, expected {expected}"
            )
        return template

    def join(self, query: list[int], passage: list[int]) -> tuple[list[int], list[int] | None]:
        """The pair's ids and token types."""
        ids = [*self.prefix, *query, *self.middle, *passage, *self.suffix]
        if self.types is None:
            return ids, None
        prefix, a_type, middle, b_type, suffix = self.types
        return ids, [*prefix, *([a_type] * len(query)), *middle, *([b_type] * len(passage)), *suffix]


class BGEReranker(TransformerModel[np.ndarray]):
    """A cross-encoder reranker: ``compute_score(pairs)`` gives each (query, passage) pair's relevance
    logit, as FlagEmbedding's ``FlagReranker`` (``normalize=True``: its sigmoid, in ``[0, 1]``).

    ``BGEReranker(model_name_or_path=None, *, max_length=512, query_max_length=None, normalize=False,
    ...)`` loads a one-label ``*ForSequenceClassification`` checkpoint: bge-reranker-base/large and
    bge-reranker-v2-m3 (XLM-R), or a BERT cross-encoder (segment B typed 1). The default model is
    ``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``. The LLM-based rerankers
    (bge-reranker-v2-gemma, -minicpm-layerwise) are not supported: they raise
    :class:`~m3rag.ModelKindError`, as does an embedding checkpoint.

    FlagReranker's instruction arguments (``query_instruction_for_rerank``, ``..._format``, and the
    passage ones) are accepted with its meaning. Pairs are batched by length under the token budget
    (``batch_size`` pairs and ``batch_tokens`` padded tokens at most), with the device and dtype policy,
    coalescing and :meth:`shared` of every m3rag model. Truncation is FlagReranker's at the id level
    (see this module's docstring for the transformers-5 difference).
    """

    model_class = "AutoModelForSequenceClassification"
    batch_size: int = 128
    pair_max_length: int = 512
    """Default ``max_length`` of :meth:`compute_score`: tokens per pair, specials included."""
    query_max_length: int | None = None
    """Default query cut; ``None``: ``max_length * 3 // 4``, as FlagReranker."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] | None = None,
        *,
        max_length: int | None = None,
        query_max_length: int | None = None,
        normalize: bool = False,
        batch_size: int | None = None,
        query_instruction_for_rerank: str | None = None,
        query_instruction_format: str = "{}{}",
        passage_instruction_for_rerank: str | None = None,
        passage_instruction_format: str = "{}{}",
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
        if not isinstance(normalize, bool):
            raise InputTypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.query_instruction_for_rerank = check_instruction(query_instruction_for_rerank, "query_instruction_for_rerank")
        self.passage_instruction_for_rerank = check_instruction(passage_instruction_for_rerank, "passage_instruction_for_rerank")
        self.query_instruction_format = check_format(query_instruction_format, "query_instruction_format")
        self.passage_instruction_format = check_format(passage_instruction_format, "passage_instruction_format")
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
        self.normalize: bool = normalize
        self.template = PairTemplate.of(self.tokenizer)
        if batch_size is not None:
            self.batch_size = check_positive_int(batch_size, "batch_size")
        if max_length is not None:
            self.pair_max_length = self._check_batching(None, max_length, None, 0)["max_length"]
        self.query_max_length = check_positive_int(query_max_length, "query_max_length", optional=True)

    @classmethod
    def default_model(cls) -> str:
        """``$M3RAG_RERANKER_MODEL`` or ``BAAI/bge-reranker-v2-m3``."""
        return default_model("reranker")

    def _check_config(self, config: dict[str, Any], directory: Path) -> None:
        super()._check_config(config, directory)
        labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
        if labels != 1:
            raise ModelKindError(
                f"{directory} is a classifier with {labels} labels; a BGE reranker gives one relevance logit per pair (num_labels=1)",
                directory / "config.json",
            )

    @classmethod
    def _share_key(cls, options: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
        return cls._all_options_key(options), ()  # every option changes what the instance computes by default

    def __repr__(self) -> str:
        return f"BGEReranker({self.name!r}, device={self.device}, dtype={self.dtype})"

    # ------------------------------------------------------------------ scoring
    def compute_score(
        self,
        sentence_pairs: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        *,
        query_max_length: int | None = None,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> list[float]:
        """Relevance scores of ``(query, passage)`` pairs, in input order: a ``list[float]``, also for
        one pair (a list of one), ``[]`` for none.

        Raw logits, or their sigmoid with ``normalize`` (default the reranker's). ``max_length``
        (default 512) bounds each pair's tokens with the specials; the query is cut first at
        ``query_max_length`` (default ``max_length * 3 // 4``). Pairs must be 2-item lists or tuples
        of ``str`` (:class:`~m3rag.InputTypeError` names the first that is not).
        """
        pairs, options, normalize = self._prepare(
            sentence_pairs, batch_size, max_length, normalize, query_max_length, batch_tokens, show_progress_bar
        )
        return self._finish(self._call(pairs, options) if pairs else np.zeros(0, dtype=np.float32), normalize)

    async def acompute_score(
        self,
        sentence_pairs: Sequence[str] | Sequence[Sequence[str]],
        batch_size: int | None = None,
        max_length: int | None = None,
        normalize: bool | None = None,
        *,
        query_max_length: int | None = None,
        batch_tokens: int | None = None,
    ) -> list[float]:
        """:meth:`compute_score` for asyncio: the event loop never waits on the model."""
        pairs, options, normalize = self._prepare(sentence_pairs, batch_size, max_length, normalize, query_max_length, batch_tokens, False)
        return self._finish(await self._acall(pairs, options) if pairs else np.zeros(0, dtype=np.float32), normalize)

    def _prepare(
        self,
        sentence_pairs: Any,
        batch_size: int | None,
        max_length: int | None,
        normalize: bool | None,
        query_max_length: int | None,
        batch_tokens: int | None,
        show_progress_bar: bool | None,
    ) -> tuple[list[tuple[str, str]], dict[str, Any], bool]:
        """Validate a call in the caller's thread; returns the pairs with their instructions."""
        pairs, _ = check_pairs(sentence_pairs)
        if normalize is not None and not isinstance(normalize, bool):
            raise InputTypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        options: dict[str, Any] = self._check_batching(batch_size, max_length, batch_tokens, self.pair_max_length)
        query_max_length = check_positive_int(query_max_length, "query_max_length", optional=True)
        if query_max_length is None:
            query_max_length = self.query_max_length or options["max_length"] * 3 // 4
        options.update(query_max_length=query_max_length, show_progress_bar=show_progress_bar)
        qi, qf, pi, pf = (
            self.query_instruction_for_rerank,
            self.query_instruction_format,
            self.passage_instruction_for_rerank,
            self.passage_instruction_format,
        )
        if qi is not None or pi is not None:
            pairs = [(apply_instruction(qi, q, qf), apply_instruction(pi, p, pf)) for q, p in pairs]
        return pairs, options, self.normalize if normalize is None else normalize

    @staticmethod
    def _finish(logits: np.ndarray, normalize: bool) -> list[float]:
        return sigmoid(logits).tolist() if normalize else [float(x) for x in logits]

    def pair_ids(
        self, pairs: Sequence[tuple[str, str]], max_length: int, query_max_length: int
    ) -> tuple[list[list[int]], list[list[int]] | None, np.ndarray]:
        """Token ids (and token types) of each pair as the model sees it, and a ``bool [n]`` array of
        the pairs that were cut (see the module docstring for the truncation)."""
        queries = list(dict.fromkeys(q for q, _ in pairs))  # one query, many passages: tokenize it once
        passages = [p for _, p in pairs]

        def ids_of(texts: list[str]) -> list[list[int]]:
            return self._tokenize(  # type: ignore[no-any-return]
                lambda tok: tok(
                    texts,
                    add_special_tokens=False,
                    truncation=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    verbose=False,
                )["input_ids"],
                texts,
            )

        query_ids = dict(zip(queries, ids_of(queries)))
        passage_ids = ids_of(passages)
        specials = self.template.num_special
        all_ids: list[list[int]] = []
        all_types: list[list[int]] | None = None if self.template.types is None else []
        truncated = np.zeros(len(pairs), dtype=bool)
        for i, ((query, _), full_passage) in enumerate(zip(pairs, passage_ids)):
            full_query = query_ids[query]
            q, p = full_query[:query_max_length], full_passage[:max_length]
            overflow = len(q) + len(p) + specials - max_length
            if overflow > 0:
                if len(p) <= overflow:
                    raise InputValueError(
                        f"sentence_pairs[{i}]: the query's {len(q)} tokens and {specials} special tokens leave no room for the passage "
                        f"within max_length={max_length}; lower query_max_length or raise max_length"
                    )
                p = p[:-overflow]
            truncated[i] = len(q) < len(full_query) or len(p) < len(full_passage)
            ids, types = self.template.join(q, p)
            all_ids.append(ids)
            if all_types is not None and types is not None:
                all_types.append(types)
        return all_ids, all_types, truncated

    def _process(
        self,
        pairs: list[tuple[str, str]],
        *,
        batch_size: int,
        max_length: int,
        query_max_length: int,
        batch_tokens: int,
        show_progress_bar: bool | None,
    ) -> np.ndarray:
        """``float32 [n]``: each pair's logit."""
        ids, types, truncated = self.pair_ids(pairs, max_length, query_max_length)
        self._warn_truncated(truncated, max_length, "pairs")
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        scores = np.zeros(len(ids), dtype=np.float32)

        def step(batch: np.ndarray) -> None:
            rows = batch.tolist()
            output, _ = self._forward([ids[i] for i in rows], None if types is None else [types[i] for i in rows])
            scores[batch] = output.logits.view(-1).float().cpu().numpy()

        self._run_batches(
            lengths, step, batch_size=batch_size, batch_tokens=batch_tokens, show_progress_bar=show_progress_bar, desc="Reranking"
        )
        return scores
