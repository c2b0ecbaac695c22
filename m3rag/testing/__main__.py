"""``python -m m3rag.testing DIR [--layout L] [--preset tiny|wide] [--seed N]``: build (or rebuild) a
checkpoint in DIR and print its path, e.g. ``export M3RAG_MODEL=$(python -m m3rag.testing DIR)``.

Layouts: ``bge-m3`` (default), ``bge-en-v1.5`` (BERT embedder, also llm-embedder's layout),
``bge-reranker-v2-m3`` (XLM-R cross-encoder) and ``bert-reranker`` (BERT cross-encoder)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from m3rag.testing.bert import build_bert_checkpoint
from m3rag.testing.checkpoint import PRESETS, build_checkpoint
from m3rag.testing.reranker import build_reranker_checkpoint

LAYOUTS: dict[str, Callable[..., Path]] = {
    "bge-m3": build_checkpoint,
    "bge-en-v1.5": build_bert_checkpoint,
    "bge-reranker-v2-m3": lambda directory, **kw: build_reranker_checkpoint(directory, base="xlm-roberta", **kw),
    "bert-reranker": lambda directory, **kw: build_reranker_checkpoint(directory, base="bert", **kw),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m m3rag.testing", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory")
    parser.add_argument("--layout", choices=list(LAYOUTS), default="bge-m3", help="checkpoint layout (default: %(default)s)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="encoder shape (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default: %(default)s)")
    args = parser.parse_args(argv)
    options: dict[str, Any] = dict(preset=args.preset, seed=args.seed, exist_ok=True)
    print(LAYOUTS[args.layout](args.directory, **options))


if __name__ == "__main__":
    main()
