"""Small random checkpoints in the exact BAAI layouts, for tests and benchmarks without the hub.

``build_checkpoint(path)`` writes everything a bge-m3 snapshot holds (config, encoder weights as
``model.safetensors``, the ColBERT and sparse heads, and an XLM-R sentencepiece tokenizer) with random
but deterministic weights. The tokenizer is trained here, with the ``sentencepiece`` library, on
``SAMPLE_TEXTS``, a small multilingual corpus written for this project. The init is scaled so that
different texts get clearly different dense vectors and the sparse head keeps a good share of tokens
(HF's default std 0.02 makes a random XLM-R nearly input-blind); ``checkpoint_quality`` measures that.

``python -m m3rag.testing DIR [--preset tiny|wide] [--seed N]`` builds one from the shell.
"""

from m3rag.testing.checkpoint import CHECKPOINT_FILES, MAX_POSITION_EMBEDDINGS, PRESETS, CheckpointPreset, build_checkpoint
from m3rag.testing.corpus import SAMPLE_TEXTS, SAMPLE_TEXTS_BY_LANGUAGE
from m3rag.testing.quality import CheckpointQuality, checkpoint_quality
from m3rag.testing.tokenizer import MODEL_MAX_LENGTH

__all__ = [
    "CHECKPOINT_FILES",
    "MAX_POSITION_EMBEDDINGS",
    "MODEL_MAX_LENGTH",
    "PRESETS",
    "SAMPLE_TEXTS",
    "SAMPLE_TEXTS_BY_LANGUAGE",
    "CheckpointPreset",
    "CheckpointQuality",
    "build_checkpoint",
    "checkpoint_quality",
]
