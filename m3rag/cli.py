"""The ``m3rag`` command: index files, search them, encode texts, show facts.

    m3rag index PATH... --index DIR [--chunk-tokens 256] [--overlap 32]
    m3rag search DIR "query" [-k 5] [--mode dense|sparse|hybrid] [--rerank colbert|hybrid] [--json]
    m3rag encode [FILE|-] [--sparse] [--colbert] [--no-dense]      (JSONL on stdout)
    m3rag info [--index DIR]

Common flags: --model (default: the index's model, else $M3RAG_MODEL or BAAI/bge-m3), --device,
--dtype, --batch-tokens. Errors print one line and exit with status 2; ``index`` exits with 1 when
some files could not be read (the others are indexed, the bad ones listed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m3rag.chunking import chunk_text
from m3rag.encoder import M3Encoder
from m3rag.errors import M3RagError
from m3rag.index import M3Index
from m3rag.stores.local.snapshot import read_manifest

__all__ = ["main"]

TEXT_SUFFIXES = (".txt", ".md")


def _encoder(args: argparse.Namespace, model: str | None = None) -> M3Encoder:
    return M3Encoder(args.model or model, device=args.device, dtype=args.dtype, batch_tokens=args.batch_tokens)


def _files(paths: Sequence[str]) -> tuple[list[Path], list[str], list[Path]]:
    """Text files under ``paths``, problems as messages, and the directory roots walked."""
    files: list[Path] = []
    problems: list[str] = []
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            roots.append(path)
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file or directory")
    return list(dict.fromkeys(files)), problems, roots


def cmd_index(args: argparse.Namespace) -> int:
    index_dir = Path(args.index)
    existing = (index_dir / "CURRENT").exists()
    model = read_manifest(index_dir)["model"]["name"] if existing else None
    encoder = _encoder(args, model)
    index = M3Index.load(index_dir, encoder) if existing else M3Index(encoder)
    files, problems, roots = _files(args.paths)

    indexed: dict[str, tuple[str, list[str]]] = {}  # source -> (file hash, chunk ids)
    for doc in index.get(index.ids):
        source = doc.metadata.get("source")
        if isinstance(source, str):
            indexed.setdefault(source, (doc.metadata.get("file_hash", ""), []))[1].append(doc.id)

    added = unchanged = 0
    seen: set[str] = set()
    for path in files:
        source = str(path)
        seen.add(source)
        try:
            data = path.read_bytes()
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        file_hash = hashlib.sha256(data).hexdigest()
        if source in indexed and indexed[source][0] == file_hash:
            unchanged += 1
            continue
        if source in indexed:
            index.delete(indexed[source][1])
        chunks = chunk_text(text, encoder.tokenizer, max_tokens=args.chunk_tokens, overlap=args.overlap)
        if chunks:
            index.add(
                [c.text for c in chunks],
                ids=[f"{source}#{i}" for i in range(len(chunks))],
                metadatas=[{"source": source, "file_hash": file_hash, "chunk": i, "start": c.start, "end": c.end} for i, c in enumerate(chunks)],
            )
        added += 1
    under_roots = [s for s in indexed if s not in seen and any(Path(s).is_relative_to(r) for r in roots)]
    gone = [s for s in under_roots if not Path(s).exists()]
    for source in gone:
        index.delete(indexed[source][1])
    index.save(index_dir)
    print(f"{index_dir}: {len(index)} passages; {added} files (re)indexed, {unchanged} unchanged, {len(gone)} removed")
    for problem in problems:
        print(f"m3rag: could not index {problem}", file=sys.stderr)
    return 1 if problems else 0


def _snippet(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_search(args: argparse.Namespace) -> int:
    index_dir = Path(args.index)
    encoder = _encoder(args, read_manifest(index_dir)["model"]["name"])
    index = M3Index.load(index_dir, encoder)
    hits = index.search(args.query, args.k, mode=args.mode, rerank=args.rerank, fusion=args.fusion)
    if args.json:
        for rank, hit in enumerate(hits, 1):
            print(json.dumps({"rank": rank, "id": hit.id, "score": hit.score, "scores": hit.scores, "metadata": hit.metadata, "text": hit.text}, ensure_ascii=False))
        return 0
    modes = [m for m in ("dense", "sparse", "colbert") if any(m in h.scores for h in hits)]
    header = ["#", "score", *modes, "source", "text"]
    rows = []
    for rank, hit in enumerate(hits, 1):
        source = hit.metadata.get("source")
        where = f"{os.path.relpath(source)}:{hit.metadata.get('chunk', 0)}" if isinstance(source, str) else hit.id
        rows.append([str(rank), f"{hit.score:.4f}", *(f"{hit.scores[m]:.4f}" if m in hit.scores else "" for m in modes), where, _snippet(hit.text)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if not hits:
        print("(no results)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    with source:
        texts = [line.rstrip("\n") for line in source]
    encoder = _encoder(args)
    out = encoder.encode(texts, max_length=args.max_length, return_dense=not args.no_dense, return_sparse=args.sparse, return_colbert_vecs=args.colbert)
    for i, item in enumerate(out):
        record: dict[str, Any] = {"index": i, "num_tokens": item.num_tokens, "truncated": item.truncated}
        if item.dense_vecs is not None:
            record["dense"] = item.dense_vecs.tolist()
        if item.lexical_weights is not None:
            record["sparse"] = {str(k): v for k, v in item.lexical_weights.items()}
        if item.colbert_vecs is not None:
            record["colbert"] = item.colbert_vecs.tolist()
        sys.stdout.write(json.dumps(record) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.index) if args.index else None
    encoder = _encoder(args, manifest["model"]["name"] if manifest else None)
    facts: dict[str, Any] = {
        "model": encoder.name, "path": str(encoder.path), "device": str(encoder.device), "dtype": str(encoder.dtype).replace("torch.", ""),
        "dense_dim": encoder.dim, "colbert_dim": encoder.colbert_dim, "vocab_size": encoder.vocab_size,
        "max_length": encoder.max_length, "batch_tokens": encoder.batch_tokens, "fingerprint": encoder.fingerprint,
    }
    if args.index:
        index = M3Index.load(args.index, encoder)
        sources = {d.metadata.get("source") for d in index.get(index.ids)}
        size = sum(p.stat().st_size for p in Path(args.index).rglob("*") if p.is_file())
        facts.update({"index": str(args.index), "passages": len(index), "files": len(sources - {None}), "index_bytes": size, **{f"index_{k}": v for k, v in manifest.get("settings", {}).items()}})  # type: ignore[union-attr]
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="hub id or local directory (default: the index's model, else $M3RAG_MODEL or BAAI/bge-m3)")
    common.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: the best available)")
    common.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: fp16 on GPU, fp32 on CPU)")
    common.add_argument("--batch-tokens", type=int, default=None, help="padded tokens per forward pass")

    parser = argparse.ArgumentParser(prog="m3rag", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", parents=[common], help="index .txt/.md files and folders (re-runs update only what changed)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (created or updated)")
    p.add_argument("--chunk-tokens", type=int, default=256, help="tokens per passage (default 256)")
    p.add_argument("--overlap", type=int, default=32, help="tokens shared by consecutive passages (default 32)")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", parents=[common], help="search an index")
    p.add_argument("index", metavar="DIR")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="hybrid")
    p.add_argument("--rerank", choices=("colbert", "hybrid"), default=None)
    p.add_argument("--fusion", choices=("weighted", "rrf"), default="weighted")
    p.add_argument("--json", action="store_true", help="one JSON object per hit")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("encode", parents=[common], help="encode texts (one per line) to JSONL")
    p.add_argument("input", nargs="?", default="-", help="file with one text per line, or - for stdin")
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--no-dense", action="store_true")
    p.add_argument("--sparse", action="store_true")
    p.add_argument("--colbert", action="store_true")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("info", parents=[common], help="model, device, dtype, dims (and index stats)")
    p.add_argument("--index", default=None, metavar="DIR")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (M3RagError, OSError) as exc:
        message = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"m3rag: error: {message[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
