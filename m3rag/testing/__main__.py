"""``python -m m3rag.testing DIR [--preset tiny|wide] [--seed N]``: build (or rebuild) a checkpoint
in DIR and print its path, e.g. ``export M3RAG_MODEL=$(python -m m3rag.testing DIR)``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from m3rag.testing.checkpoint import PRESETS, build_checkpoint


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m m3rag.testing", description=__doc__)
    parser.add_argument("directory")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_checkpoint(args.directory, preset=args.preset, seed=args.seed, exist_ok=True))


if __name__ == "__main__":
    main()
