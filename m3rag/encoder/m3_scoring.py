"""FlagEmbedding's ``BGEM3FlagModel`` scoring API on top of any M3 encoder's ``encode``.

Kept apart from the forward pass: these methods only call ``encode`` and :mod:`m3rag.scoring`,
so a remote encoder gets them by mixing this class in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from m3rag import scoring
from m3rag.validation import check_pairs

if TYPE_CHECKING:
    from m3rag.encoder.output import M3Output

__all__ = ["M3ScoringMixin"]


class M3ScoringMixin:
    """``compute_score``, ``compute_lexical_matching_score``, ``colbert_score`` and
    ``convert_id_to_token`` with FlagEmbedding's names, arguments and semantics."""

    query_max_length: int
    passage_max_length: int
    tokenizer: Any

    encode: Callable[..., Any]
    """The host class's ``encode(sentences, batch_size, max_length, **options)``."""

    def compute_lexical_matching_score(self, lexical_weights_1: Any, lexical_weights_2: Any) -> float | np.ndarray:
        """Lexical score(s): dict x dict -> float, list x list -> ``[m, n]`` array."""
        return scoring.lexical_matching_score(lexical_weights_1, lexical_weights_2)

    def colbert_score(self, q_reps: np.ndarray, p_reps: np.ndarray) -> float:
        """ColBERT score of one query ``[Lq, d]`` and one passage ``[Lp, d]``, as a float."""
        return scoring.colbert_score(q_reps, p_reps)

    def convert_id_to_token(self, lexical_weights: Mapping[Any, float] | Sequence[Mapping[Any, float]]) -> Any:
        """``{token_id: w}`` (or a list of them) to ``{token_text: w}``, as FlagEmbedding does."""
        single = isinstance(lexical_weights, Mapping)
        items: list[Mapping[Any, float]] = [lexical_weights] if isinstance(lexical_weights, Mapping) else list(lexical_weights)
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
        pairs, single = check_pairs(sentence_pairs)
        if not pairs:
            return []
        weights = scoring.resolve_weights(weights_for_different_modes, default=scoring.EQUAL_WEIGHTS)
        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        kwargs: dict[str, Any] = dict(return_dense=True, return_sparse=True, return_colbert_vecs=True)
        q_length = self.query_max_length if max_query_length is None else max_query_length
        p_length = self.passage_max_length if max_passage_length is None else max_passage_length
        q_out: M3Output = self.encode(queries, batch_size, q_length, **kwargs)
        p_out: M3Output = self.encode(passages, batch_size, p_length, **kwargs)
        q_pos = {t: i for i, t in enumerate(queries)}
        p_pos = {t: i for i, t in enumerate(passages)}
        qi = np.array([q_pos[q] for q, _ in pairs])
        pi = np.array([p_pos[p] for _, p in pairs])
        per_mode = {
            "colbert": scoring.colbert_pair_scores([q_out.colbert_vecs[i] for i in qi], [p_out.colbert_vecs[i] for i in pi]),  # type: ignore[index]
            "sparse": scoring.lexical_pair_scores(q_out.sparse[qi], p_out.sparse[pi]),  # type: ignore[index]
            "dense": scoring.dense_pair_scores(q_out.dense[qi], p_out.dense[pi]),  # type: ignore[index]
        }
        scores = {
            **per_mode,
            "sparse+dense": scoring.weighted_fusion({m: per_mode[m] for m in ("sparse", "dense")}, weights),
            "colbert+sparse+dense": scoring.weighted_fusion(per_mode, weights),
        }
        return {k: float(v[0]) for k, v in scores.items()} if single else {k: v.tolist() for k, v in scores.items()}
