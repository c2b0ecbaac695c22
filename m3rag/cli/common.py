"""What the ``m3rag`` commands share: which model to load and how to open the index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from m3rag.errors import IndexFormatError, InputValueError

if TYPE_CHECKING:
    from m3rag.encoder.protocol import M3EncoderLike
    from m3rag.index import M3Index

__all__ = ["describe_model", "load_encoder", "open_index", "save_index"]


def load_encoder(args: argparse.Namespace, name: str | None) -> M3EncoderLike:
    """The encoder of ``--model`` (else ``name``, else ``$M3RAG_MODEL`` or BAAI/bge-m3); an
    ``http(s)://`` model is an ``m3rag serve`` address."""
    from m3rag.encoder import M3Encoder, resolve_encoder

    model = args.model or name
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        return resolve_encoder(model)
    return M3Encoder(model, device=args.device, dtype=args.dtype, batch_tokens=args.batch_tokens)


def open_index(args: argparse.Namespace, *, create: bool) -> tuple[M3Index, Path | None]:
    """The index the command works on, and the local directory to save it to (``None`` for a
    remote store, which persists on its own). ``args.model_from_index`` tells whether the model
    was named by the index rather than by ``--model``."""
    from m3rag.index import M3Index
    from m3rag.stores.local.snapshot import is_index_dir, read_manifest

    spec = getattr(args, "store", None)
    if spec:
        from m3rag.stores import open_store

        store = open_store(spec, collection=getattr(args, "collection", None))
        if store is not None:
            recorded = store.recorded_model()
            args.model_from_index = args.model is None and recorded is not None
            if create:
                _check_store_options(args)
            return M3Index(load_encoder(args, recorded), store=store), None
        args.index = spec  # a plain directory is the local store
    directory = Path(args.index)
    if (directory / "CURRENT").exists():
        manifest = read_manifest(directory)
        args.model_from_index = args.model is None
        index = M3Index.load(directory, load_encoder(args, manifest["model"]["name"]))
        if create:
            _check_options_match(args, index)
        return index, directory
    if not create:
        raise IndexFormatError(
            f"{directory} is not an m3rag index (no CURRENT file): build one with `m3rag index PATH --index {directory}`", directory
        )
    if directory.exists() and (not directory.is_dir() or not is_index_dir(directory)):
        raise IndexFormatError(f"{directory} exists and is not an m3rag index directory: refusing to write into it", directory)
    args.model_from_index = False
    options = dict(store_colbert=not args.no_colbert, colbert_dtype=args.colbert_dtype, dense_index=args.dense_index)
    return M3Index(load_encoder(args, None), **options), directory


def _check_store_options(args: argparse.Namespace) -> None:
    given = [
        flag
        for flag, on in (
            ("--no-colbert", args.no_colbert),
            ("--colbert-dtype", args.colbert_dtype_given),
            ("--dense-index", args.dense_index != "flat"),
        )
        if on
    ]
    if given:
        raise InputValueError(f"{', '.join(given)} configure a local index; a --store keeps its own layout (see its options in Python)")


def _check_options_match(args: argparse.Namespace, index: M3Index) -> None:
    store = index.store
    if args.no_colbert and store.keeps_colbert:
        raise InputValueError("--no-colbert applies to a new index; this one stores ColBERT vectors (index into a new directory)")
    wanted = getattr(args, "colbert_dtype_given", None)
    kept = getattr(store, "colbert_dtype", None)
    if wanted and store.keeps_colbert and kept is not None and str(kept) != wanted:
        raise InputValueError(f"--colbert-dtype {wanted} differs from this index's {kept}")


def save_index(index: M3Index, directory: Path) -> None:
    index.save(directory)


def describe_model(index: M3Index, args: argparse.Namespace) -> None:
    """Say on stderr which model the index named (an index directory chooses the model it needs)."""
    if getattr(args, "model_from_index", False):
        print(f"m3rag: model {index.encoder.name} (named by the index; --model overrides)", file=sys.stderr)
