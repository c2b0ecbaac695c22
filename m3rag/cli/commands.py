"""``m3rag search``, ``encode`` and ``info``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from m3rag.cli.common import describe_model, load_encoder, open_index
from m3rag.errors import InputValueError

__all__ = ["cmd_encode", "cmd_info", "cmd_migrate", "cmd_search", "parse_filter"]


def parse_filter(items: list[str] | None) -> dict[str, Any] | None:
    """``["lang=en", "n=3", "draft=false"]`` -> ``{"lang": "en", "n": 3, "draft": False}`` (JSON values, else text)."""
    if not items:
        return None
    found: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputValueError(f"--filter {item!r}: use KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        found[key] = value if isinstance(value, (str, int, float, bool)) else raw
    return found


def _snippet(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_search(args: argparse.Namespace) -> int:
    index, _ = open_index(args, create=False)
    describe_model(index, args)
    hits = index.search(
        args.query,
        args.k,
        mode=args.mode,
        rerank=args.rerank,
        fusion=args.fusion,
        candidates=args.candidates,
        filter=parse_filter(args.filter),
    )
    if args.json:
        for rank, hit in enumerate(hits, 1):
            record = {"rank": rank, "id": hit.id, "score": hit.score, "scores": hit.scores, "metadata": hit.metadata, "text": hit.text}
            print(json.dumps(record, ensure_ascii=False))
        return 0
    if not hits:
        print("(no results)" if args.query.strip() else "(no results: the query is empty)")
        return 0
    modes = [m for m in ("dense", "sparse", "colbert", "reranker") if any(m in h.scores for h in hits)]
    header = ["#", "score", *modes, "source", "text"]
    rows = []
    for rank, hit in enumerate(hits, 1):
        source = hit.metadata.get("source")
        where = f"{source}:{hit.metadata.get('chunk', 0)}" if isinstance(source, str) else hit.id
        rows.append(
            [str(rank), f"{hit.score:.4f}", *(f"{hit.scores[m]:.4f}" if m in hit.scores else "" for m in modes), where, _snippet(hit.text)]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _read_lines(source: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of a UTF-8 file or stdin."""
    if source == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
    else:
        data = Path(source).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        name = "standard input" if source == "-" else source
        raise InputValueError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def cmd_encode(args: argparse.Namespace) -> int:
    from m3rag.encoder import TruncationWarning

    if args.no_dense and not (args.sparse or args.colbert):
        raise InputValueError("nothing to output: --no-dense needs --sparse or --colbert")
    lines = _read_lines(args.input)
    encoder = load_encoder(args, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TruncationWarning)
        out = encoder.encode(
            [t for _, t in lines],
            max_length=args.max_length,
            return_dense=not args.no_dense,
            return_sparse=args.sparse,
            return_colbert_vecs=args.colbert,
        )
    for (line, _), item in zip(lines, out):
        record: dict[str, Any] = {"line": line, "num_tokens": item.num_tokens, "truncated": item.truncated}
        if item.dense_vecs is not None:
            record["dense"] = item.dense_vecs.tolist()
        if item.lexical_weights is not None:
            record["sparse"] = {str(k): v for k, v in item.lexical_weights.items()}
        if item.colbert_vecs is not None:
            record["colbert"] = item.colbert_vecs.tolist()
        sys.stdout.write(json.dumps(record) + "\n")
    truncated = int(out.truncated.sum()) if len(out) else 0
    if truncated or any(issubclass(w.category, TruncationWarning) for w in caught):
        limit = args.max_length or encoder.passage_max_length
        print(
            f'm3rag: {truncated} of {len(out)} lines were longer than {limit} tokens and were truncated ("truncated": true)',
            file=sys.stderr,
        )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    facts: dict[str, Any] = {}
    if args.index:
        from m3rag.stores.local.snapshot import read_manifest

        directory = Path(args.index)
        manifest = read_manifest(directory)
        model = manifest["model"]
        facts.update(
            {
                "index": str(directory),
                "format_version": manifest["version"],
                "passages": manifest["count"],
                "index_bytes": sum(f["bytes"] for f in manifest["files"].values()),
                "model": model["name"],
                "fingerprint": model["fingerprint"],
                "dense_dim": model["dim"],
                "colbert_dim": model.get("colbert_dim"),
                "vocab_size": model["vocab_size"],
                **dict(manifest["settings"]),
            }
        )
    if args.model or not args.index:
        encoder = load_encoder(args, None)
        facts.update(
            {
                "model": encoder.name,
                "path": str(getattr(encoder, "path", "")),
                "device": str(getattr(encoder, "device", "remote")),
                "dtype": str(getattr(encoder, "dtype", "")).replace("torch.", ""),
                "dense_dim": encoder.dim,
                "colbert_dim": encoder.colbert_dim,
                "vocab_size": encoder.vocab_size,
                "max_length": getattr(encoder, "max_length", encoder.passage_max_length),
                "batch_tokens": getattr(encoder, "batch_tokens", ""),
                "model_fingerprint": encoder.fingerprint,
            }
        )
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy a local index into a --store with its vectors (nothing is encoded again)."""
    from m3rag.index import M3Index
    from m3rag.stores import open_store

    store = open_store(args.store, collection=args.collection)
    if store is None:
        raise InputValueError(f"--store {args.store!r} is a directory: migrate copies a local index into qdrant:... or milvus:...")
    source = M3Index.load(args.source, load_encoder(args, None) if args.model else None)
    target = source.copy_to(store, upsert=args.upsert)
    print(f"{args.source} -> {store.describe()}: {len(target)} documents copied (vectors carried over, not recomputed)")
    return 0
