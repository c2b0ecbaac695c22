"""``m3rag index``: keep an index in step with files, in bounded batches, resumable after Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m3rag.cli.corpus import Skipped, read_text, walk

if TYPE_CHECKING:
    from m3rag.distributed import FileEncoder
    from m3rag.index import M3Index

__all__ = ["EXIT_INTERRUPTED", "cmd_index"]

EXIT_INTERRUPTED = 130


@dataclass
class _Indexed:
    """What the index holds of one source file."""

    file_hash: str
    chunks: int
    ids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.ids) == self.chunks


def _indexed(index: M3Index) -> dict[str, _Indexed]:
    state: dict[str, _Indexed] = {}
    for doc in index.get(index.ids):
        source, file_hash, chunks = (doc.metadata.get(k) for k in ("source", "file_hash", "chunks"))
        if not isinstance(source, str):
            continue
        entry = state.setdefault(source, _Indexed(str(file_hash), chunks if isinstance(chunks, int) else -1))
        if entry.file_hash != file_hash:
            entry.chunks = -1  # chunks of two versions: incomplete, re-index it
        entry.ids.append(doc.id)
    return state


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager stopping the job) ends the run like Ctrl-C: progress is saved."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the index changes: a signal arriving mid-write is recorded and
    raised as ``KeyboardInterrupt`` right after it, so what is saved on an interruption is never a
    half-written batch. (Python runs signal handlers in the main thread whichever thread the OS
    delivers to, so handlers, not signal masks, are what defers them.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt


class _Batcher:
    """Passages waiting to be encoded and stored, flushed every ``size`` passages."""

    def __init__(self, index: M3Index, size: int) -> None:
        self.index, self.size = index, size
        self.texts: list[str] = []
        self.ids: list[str] = []
        self.metas: list[dict[str, Any]] = []

    def add(self, text: str, doc_id: str, meta: dict[str, Any]) -> None:
        self.texts.append(text)
        self.ids.append(doc_id)
        self.metas.append(meta)
        if len(self.texts) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.texts:
            with _uninterrupted():
                self.index.add(self.texts, ids=self.ids, metadatas=self.metas, upsert=True)
            self.texts, self.ids, self.metas = [], [], []


def cmd_index(args: argparse.Namespace) -> int:
    from m3rag.chunking import source_passages
    from m3rag.cli.common import describe_model, open_index, save_index

    root, files, skipped = walk(args.paths)
    ray_device = args.device
    if getattr(args, "ray", False):
        args.device = "cpu"  # with --ray the model here only checks the index; the actors encode, on --device
    index, target = open_index(args, create=True)
    describe_model(index, args)
    tokenizer = getattr(index.encoder, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{index.encoder.name} has no tokenizer here to cut files into passages")
    state = _indexed(index)
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    problems: list[Skipped] = [s for s in skipped if not s.reason.startswith("not a text file")]
    not_text = Counter(Path(s.path).suffix or "(no suffix)" for s in skipped if s.reason.startswith("not a text file"))
    batcher = _Batcher(index, args.batch)
    last_save = time.monotonic()
    interrupted = False
    with _sigterm_as_interrupt(), ExitStack() as stack:
        ray_job = _ray_job(args, index, stack, ray_device) if getattr(args, "ray", False) else None
        try:
            for source in _progress(files, "Reading" if ray_job else "Indexing"):
                seen.add(source.key)
                try:
                    text, file_hash = read_text(source.path)
                except (OSError, ValueError) as exc:
                    problems.append(Skipped(str(source.path), str(exc)))
                    continue
                old = state.get(source.key)
                if old is not None and old.file_hash == file_hash and old.complete:
                    counts["unchanged"] += 1
                    continue
                if old is not None and old.ids:
                    batcher.flush()
                    with _uninterrupted():
                        index.delete(old.ids)
                if ray_job is not None:  # cut into passages and encoded on Ray below (a blank file has none)
                    if text.strip():
                        ray_job.add(source.key, file_hash, text)
                    else:
                        counts["empty"] += 1
                    continue
                passages = source_passages(source.key, file_hash, text, tokenizer, max_tokens=args.chunk_tokens, overlap=args.overlap)
                if not passages:
                    counts["empty"] += 1
                    continue
                for passage in passages:
                    batcher.add(passage.text, passage.id, passage.metadata)
                counts["indexed"] += 1
                if target is not None and time.monotonic() - last_save >= args.save_every:
                    batcher.flush()
                    save_index(index, target)
                    last_save = time.monotonic()
            batcher.flush()
            if ray_job is not None and ray_job.files:
                stored = _store_ray_results(ray_job, index, target, args.save_every, args.batch)
                counts["indexed"] = len(stored)
                counts["empty"] += ray_job.files - len(stored)
            gone = [key for key in state if key not in seen and not (root / key).exists()]
            for key in gone:
                if state[key].ids:
                    with _uninterrupted():
                        index.delete(state[key].ids)
            counts["removed"] = len(gone)
        except KeyboardInterrupt:
            interrupted = True
    if target is not None:
        save_index(index, target)
    where = target if target is not None else index.store.describe()
    if interrupted:
        print(
            f"m3rag: interrupted; {where} holds {len(index)} passages (every file finished before the interruption). "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(
        f"{where}: {len(index)} passages; {counts['indexed']} files (re)indexed, {counts['unchanged']} unchanged, "
        f"{counts['removed']} removed" + (f", {counts['empty']} empty" if counts["empty"] else "")
    )
    if not_text:
        kinds = ", ".join(f"{suffix}: {n}" for suffix, n in not_text.most_common())
        print(f"m3rag: skipped {sum(not_text.values())} files that are not text ({kinds})", file=sys.stderr)
    for problem in problems:
        print(f"m3rag: could not index {problem.path}: {problem.reason}", file=sys.stderr)
    return 1 if problems else 0


def _progress(files: list[Any], desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(files, desc=desc, unit="file", delay=2.0, file=sys.stderr)


def _ray_job(args: argparse.Namespace, index: M3Index, stack: ExitStack, device: str | None) -> FileEncoder:
    """``--ray``: connect to Ray for the run (m3rag.distributed) and plan encoder actors for ``index``'s model."""
    try:
        from m3rag.distributed import FileEncoder, cluster_actors, ray_session
    except ImportError as exc:
        raise ImportError(f'--ray needs Ray Data: pip install "m3rag[ray]" ({exc})') from None
    stack.enter_context(ray_session(args.ray_address))
    import logging

    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # one progress display: ours
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    kept = getattr(index.store, "colbert_dtype", None)  # the local store's; Qdrant's default is float16
    outputs = ("dense", "sparse", "colbert") if index.store.keeps_colbert else ("dense", "sparse")
    return FileEncoder(
        model=index.encoder.name, chunk_tokens=args.chunk_tokens, overlap=args.overlap, dtype=args.dtype, batch_tokens=args.batch_tokens,
        max_length=index.max_length, block_rows=args.batch, outputs=outputs, **cluster_actors(args.workers, device),
        colbert_dtype="float32" if getattr(kept, "name", None) == "float32" else "float16",
    )  # fmt: skip


def _store_ray_results(job: FileEncoder, index: M3Index, target: Path | None, save_every: float, batch: int) -> set[str]:
    """Store the passages Ray encodes, in file order, saving a local index every ``save_every``
    seconds; returns the files stored whole. An interruption stops the Ray job."""
    from tqdm.auto import tqdm

    from m3rag.cli.common import save_index

    identity = index.encoder.identity
    done: set[str] = set()
    last_save = time.monotonic()
    results = job.batches(vocab_size=identity["vocab_size"], fingerprint=identity["fingerprint"], batch_size=batch)
    with tqdm(total=job.files, desc="Encoding on Ray", unit="file", file=sys.stderr, delay=2.0) as progress:
        try:
            for encoded in results:
                with _uninterrupted():
                    index.add_encoded(encoded.vectors, encoded.texts, encoded.ids, encoded.metadatas, upsert=True)
                finished = {m["source"] for m in encoded.metadatas if m["chunk"] == m["chunks"] - 1}
                progress.update(len(finished))
                done |= finished
                if target is not None and time.monotonic() - last_save >= save_every:
                    save_index(index, target)
                    last_save = time.monotonic()
        finally:
            results.close()
    return done
