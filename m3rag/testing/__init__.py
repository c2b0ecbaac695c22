"""Small random checkpoints in the exact BAAI layouts, for tests and benchmarks without the hub.

``build_checkpoint(path)`` writes everything a bge-m3 snapshot holds (config, encoder weights as
``model.safetensors``, the ColBERT and sparse heads, and an XLM-R sentencepiece tokenizer) with random
but deterministic weights. The tokenizer is trained here, with the ``sentencepiece`` library, on
``SAMPLE_TEXTS``, a small multilingual corpus written for this project. The init is scaled so that
different texts get clearly different dense vectors and the sparse head keeps a good share of tokens
(HF's default std 0.02 makes a random XLM-R nearly input-blind); ``checkpoint_quality`` measures that.

The rest of the BGE family: ``build_bert_checkpoint`` (bge-*-en-v1.5 / llm-embedder: BERT with a
WordPiece ``vocab.txt``) and ``build_reranker_checkpoint`` (bge-reranker-v2-m3: XLM-R sequence
classification with one label; or a BERT cross-encoder).

``python -m m3rag.testing DIR [--layout bge-m3|bge-en-v1.5|bge-reranker-v2-m3|bert-reranker]
[--preset tiny|wide] [--seed N]`` builds one from the shell.
"""

from m3rag.testing.bert import BERT_CHECKPOINT_FILES, build_bert_checkpoint
from m3rag.testing.checkpoint import CHECKPOINT_FILES, MAX_POSITION_EMBEDDINGS, PRESETS, CheckpointPreset, build_checkpoint
from m3rag.testing.corpus import SAMPLE_TEXTS, SAMPLE_TEXTS_BY_LANGUAGE
from m3rag.testing.quality import CheckpointQuality, checkpoint_quality
from m3rag.testing.reranker import RERANKER_CHECKPOINT_FILES, build_reranker_checkpoint
from m3rag.testing.tokenizer import MODEL_MAX_LENGTH

__all__ = [
    "BERT_CHECKPOINT_FILES",
    "CHECKPOINT_FILES",
    "MAX_POSITION_EMBEDDINGS",
    "MODEL_MAX_LENGTH",
    "PRESETS",
    "RERANKER_CHECKPOINT_FILES",
    "SAMPLE_TEXTS",
    "SAMPLE_TEXTS_BY_LANGUAGE",
    "CheckpointPreset",
    "CheckpointQuality",
    "build_bert_checkpoint",
    "build_checkpoint",
    "build_reranker_checkpoint",
    "checkpoint_quality",
]
