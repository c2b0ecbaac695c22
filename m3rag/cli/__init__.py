"""The ``m3rag`` command: index files, search them, encode texts, serve the encoder, show facts.

Imports nothing heavy until a command needs a model, so ``m3rag --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
One BGE-M3 encoder (dense, sparse and ColBERT vectors from one forward pass) for retrieval.

  m3rag index PATH... --index DIR      index text files (re-runs update what changed)
  m3rag search DIR "query"             dense, sparse or hybrid search, optionally reranked
  m3rag encode [FILE|-]                one JSON line of vectors per input line
  m3rag migrate DIR --store SPEC       copy a local index into Qdrant or Milvus
  m3rag serve                          one encoder for many processes, over HTTP
  m3rag info [--index DIR]             model and index facts

The model is --model, else the index's own, else $M3RAG_MODEL, else BAAI/bge-m3.
Exit status: 0 done; 1 some files could not be indexed (listed, the rest indexed);
2 error (one line on stderr); 130 interrupted (indexing keeps what it finished).
"""


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


class _Formatter(argparse.HelpFormatter):
    """Shows a default after the help text unless it is unset or the text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    from m3rag import __version__

    common = argparse.ArgumentParser(add_help=False)
    model = common.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="hub id, local directory or http(s):// address of `m3rag serve` "
        "(default: the index's model, else $M3RAG_MODEL or BAAI/bge-m3)",
    )
    model.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    model.add_argument(
        "--dtype",
        default=None,
        choices=("auto", "float32", "float16", "bfloat16"),
        help="auto: float16 on GPU, bfloat16 on CPUs with AMX/AVX512-BF16, else float32 (default: float16 on GPU, float32 on CPU)",
    )
    model.add_argument(
        "--batch-tokens", type=_positive, default=None, help="padded tokens per forward pass (default: 2048 on CPU, 16384 on CUDA)"
    )

    store = argparse.ArgumentParser(add_help=False)
    group = store.add_argument_group("store")
    group.add_argument(
        "--store",
        default=None,
        metavar="SPEC",
        help="keep documents in a vector database instead of DIR: qdrant:PATH, qdrant+http://HOST:6333, milvus:FILE.db, milvus+http://HOST:19530",
    )
    group.add_argument("--collection", default=None, help="collection name in --store (default: m3rag)")

    parser = argparse.ArgumentParser(prog="m3rag", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"m3rag {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "index",
        parents=[common, store],
        formatter_class=_Formatter,
        help="index text files and folders (re-runs update what changed)",
        description="Index .txt/.text/.md/.markdown/.rst files (folders recursively; a file named here is read whatever its suffix). "
        "Passages are keyed by their path relative to the folder given (or the paths' common folder), so a moved corpus is not "
        "re-indexed; files no longer under the paths are removed. Work is stored in batches and saved every --save-every "
        "seconds: Ctrl-C (or SIGTERM) saves what is finished and exits with 130; run the same command again to continue.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--index", required=False, metavar="DIR", help="index directory (created or updated); not needed with --store")
    p.add_argument("--chunk-tokens", type=_positive, default=256, help="tokens per passage")
    p.add_argument("--overlap", type=_non_negative, default=32, help="tokens shared by consecutive passages")
    p.add_argument("--batch", type=_positive, default=256, help="passages encoded and stored per step (bounds memory)")
    p.add_argument("--save-every", type=float, default=60.0, metavar="SECONDS", help="save progress at least this often (local index)")
    p.add_argument("--no-colbert", action="store_true", help="store no ColBERT vectors (a new index; rerank then re-encodes candidates)")
    p.add_argument(
        "--colbert-dtype",
        choices=("float16", "float32", "bfloat16", "int8"),
        default=None,
        help="ColBERT storage precision of a new index (default float16; float32 exact, twice the size; "
        "bfloat16 and int8: fastest rerank, see docs/performance.md)",
    )
    p.add_argument(
        "--dense-index", choices=("flat", "hnsw"), default="flat", help="exact flat search, or HNSW for large corpora (a new index)"
    )
    ray = p.add_argument_group(
        "Ray (needs m3rag[ray]): files are read here, cut into passages and encoded by actors on a Ray cluster, stored here"
    )
    ray.add_argument("--ray", action="store_true", help="encode on Ray: one actor per GPU (CPU actors on a cluster without GPUs)")
    ray.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="auto (the cluster running on this machine) or ray://HOST:10001 (default: $RAY_ADDRESS, else a local Ray for this run)",
    )
    ray.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="encoder actors (default: up to one per GPU; without GPUs one per node, using its cores)",
    )

    p = sub.add_parser("search", parents=[common, store], formatter_class=_Formatter, help="search an index")
    p.add_argument("index", metavar="DIR", nargs="?", help="index directory (not needed with --store)")
    p.add_argument("query")
    p.add_argument("-k", type=_positive, default=5, help="hits to show")
    p.add_argument(
        "--mode", choices=("dense", "sparse", "hybrid"), default="hybrid", help="first stage: dense vectors, lexical weights, or both fused"
    )
    p.add_argument(
        "--fusion",
        choices=("weighted", "rrf"),
        default="weighted",
        help="hybrid fusion: M3's weighted score sum, or reciprocal-rank fusion",
    )
    p.add_argument(
        "--rerank",
        choices=("colbert", "hybrid"),
        default=None,
        help="rescore the first stage's candidates by ColBERT, or by dense+sparse+ColBERT (default: no rerank)",
    )
    p.add_argument("--candidates", type=_positive, default=None, help="first-stage depth per mode (default: max(k, 100))")
    p.add_argument(
        "--filter", action="append", metavar="KEY=VALUE", help="metadata equality, repeatable (values read as JSON: n=3, draft=false)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per hit")

    p = sub.add_parser(
        "encode",
        parents=[common],
        formatter_class=_Formatter,
        help="encode texts, one per line, to JSON lines",
        description="Encode each non-blank line of FILE (UTF-8; - for standard input) and print one JSON object per line "
        "with its line number, token count, truncation flag and the vectors asked for.",
    )
    p.add_argument("input", nargs="?", default="-", help="file with one text per line, or - for standard input")
    p.add_argument(
        "--max-length", type=_positive, default=None, help="tokens per text, specials included (default 8192); longer texts are truncated"
    )
    p.add_argument("--no-dense", action="store_true", help="leave out the dense vector (needs --sparse or --colbert)")
    p.add_argument("--sparse", action="store_true", help="add the lexical weights {token_id: weight}")
    p.add_argument("--colbert", action="store_true", help="add the ColBERT vectors (one per token)")

    p = sub.add_parser(
        "migrate",
        parents=[common, store],
        formatter_class=_Formatter,
        help="copy a local index into Qdrant or Milvus (no re-encoding)",
        description="Copy every document of a local index, with its stored vectors, into --store.",
    )
    p.add_argument("source", metavar="DIR", help="local index directory")
    p.add_argument(
        "--upsert", action="store_true", help="replace documents the store already holds under the same ids (default: refuse them)"
    )

    p = sub.add_parser(
        "info", parents=[common], formatter_class=_Formatter, help="model facts, or an index's facts (read from its manifest)"
    )
    p.add_argument(
        "--index", default=None, metavar="DIR", help="show this index's facts without loading a model (add --model to load one too)"
    )

    p = sub.add_parser(
        "serve", formatter_class=_Formatter, help="serve one encoder to many processes over HTTP (needs m3rag[serve])", add_help=True
    )
    p.set_defaults(command="serve")
    return parser


def _serve_parser_setup(parser: argparse.ArgumentParser) -> None:
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr,index]
    try:
        from m3rag.serve.cli import add_serve_arguments
    except ImportError:
        return
    add_serve_arguments(serve)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["serve"]:
        _serve_parser_setup(parser)
    args = parser.parse_args(argv)
    if args.command == "index":
        args.colbert_dtype_given = args.colbert_dtype
        args.colbert_dtype = args.colbert_dtype or "float16"
        if not args.index and not args.store:
            parser.error("index: give --index DIR (a local index) or --store SPEC")
        if args.overlap >= args.chunk_tokens:
            parser.error(f"index: --overlap ({args.overlap}) must be smaller than --chunk-tokens ({args.chunk_tokens})")
        if not args.ray and (args.ray_address or args.workers):
            parser.error("index: --ray-address and --workers go with --ray")
    if args.command == "search" and not args.index and not args.store:
        parser.error("search: give the index directory DIR or --store SPEC")
    if args.command == "search" and args.index and args.store:
        parser.error("search: give the index directory DIR or --store SPEC, not both")
    if args.command == "migrate" and not args.store:
        parser.error("migrate: give --store SPEC (qdrant:PATH, milvus:FILE.db, ...)")
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from m3rag.errors import M3RagError

        if not isinstance(exc, (M3RagError, OSError, ValueError, ImportError)):
            raise
        message = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"m3rag: error: {message[0]}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "index":
        from m3rag.cli.indexing import cmd_index

        return cmd_index(args)
    if args.command == "serve":
        try:
            from m3rag.serve.cli import run_serve
        except ImportError as exc:
            raise ImportError(f'`m3rag serve` needs the serve extra: pip install "m3rag[serve]" ({exc})') from None
        return run_serve(args)
    from m3rag.cli import commands

    command = {"search": commands.cmd_search, "encode": commands.cmd_encode, "info": commands.cmd_info, "migrate": commands.cmd_migrate}[
        args.command
    ]
    return command(args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
