"""Shared benchmark inputs: mixed-length texts cut from m3rag.testing.SAMPLE_TEXTS."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from m3rag.testing import SAMPLE_TEXTS


def mixed_length_texts(tokenizer: PreTrainedTokenizerBase, n: int, low: int, high: int, seed: int = 0) -> list[str]:
    """``n`` texts of ``low..high`` tokens (specials included), seeded."""
    rng = np.random.default_rng(seed)
    words = " ".join(SAMPLE_TEXTS).split()
    texts = []
    for target in rng.integers(low, high + 1, size=n).tolist():
        start = int(rng.integers(0, len(words) - 2 * target))
        count = target
        text = " ".join(words[start : start + count])
        while count > 1 and len(tokenizer(text)["input_ids"]) > target:
            count -= max(1, count // 20)
            text = " ".join(words[start : start + count])
        texts.append(text)
    return texts


def add_text_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The encoding benchmarks' shared options: checkpoint, the mixed-length set, repeats."""
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--min-tokens", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
