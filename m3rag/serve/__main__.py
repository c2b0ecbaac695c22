"""``python -m m3rag.serve [options]``: run the server (see ``--help``)."""

from __future__ import annotations

import argparse
import sys

from m3rag.serve.cli import add_serve_arguments, run_serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="m3rag serve", description="Serve one M3 encoder over HTTP (dense, sparse, ColBERT, rerank, score)."
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
