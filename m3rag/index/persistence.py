"""Saving and loading an index directory atomically, as plain data (no pickle anywhere).

Layout of ``path/``::

    CURRENT                 {"snapshot": "snap-<32 hex>"}, replaced atomically (os.replace)
    snap-<32 hex>/          one complete snapshot
        manifest.json       format, version, model identity, settings, per-file size + sha256
        dense.faiss         faiss's own format
        sparse.*.npy        CSR indptr / indices / data
        colbert.*.npy       vectors [T, d] and offsets [n + 1] (when stored)
        docs.json           ids, texts, metadata

A save writes a new snapshot next to the old one, fsyncs it, then swaps ``CURRENT``: a crash at any
moment leaves ``CURRENT`` naming a complete snapshot. Loading verifies every file's size and
checksum before reading it; an index directory can name only snapshots inside itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from m3rag.errors import IndexFormatError, ModelMismatchError

__all__ = ["FORMAT", "VERSION", "write_snapshot", "read_snapshot", "read_manifest", "Snapshot"]

FORMAT = "m3rag-index"
VERSION = 1
_SNAPSHOT = re.compile(r"^snap-[0-9a-f]{32}$")
_IDENTITY_KEYS = ("dim", "colbert_dim", "vocab_size", "fingerprint")

Snapshot = dict[str, Any]
"""``{"manifest": dict, "dir": Path}``; files are read through :func:`load_array` etc."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(
    path: str | os.PathLike[str],
    writers: Mapping[str, Callable[[Path], None]],
    manifest: dict[str, Any],
) -> Path:
    """Write a snapshot: ``writers[name](file_path)`` writes each file; then swap ``CURRENT``.

    ``path`` must be absent, empty, or an existing m3rag index directory.
    """
    root = Path(path)
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / "CURRENT").exists())):
        raise IndexFormatError(f"{root} exists and is not an m3rag index directory: refusing to write into it", root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"snap-{uuid.uuid4().hex}"
    staging = root / f".tmp-{name}"
    staging.mkdir()
    try:
        files: dict[str, dict[str, Any]] = {}
        for file_name, write in writers.items():
            target = staging / file_name
            write(target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
            files[file_name] = {"bytes": target.stat().st_size, "sha256": _sha256(target)}
        full = {"format": FORMAT, "version": VERSION, **manifest, "files": files}
        manifest_path = staging / "manifest.json"
        manifest_path.write_text(json.dumps(full, indent=1, ensure_ascii=False), encoding="utf-8")
        with open(manifest_path, "rb+") as f:
            os.fsync(f.fileno())
        _fsync_dir(staging)
        os.replace(staging, root / name)
        pointer = root / f".CURRENT-{name}"
        pointer.write_text(json.dumps({"snapshot": name}), encoding="utf-8")
        with open(pointer, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(pointer, root / "CURRENT")  # the commit point
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not _current_is(root, name):
            shutil.rmtree(root / name, ignore_errors=True)
        raise
    for old in root.iterdir():  # previous snapshots and leftovers of interrupted saves
        if old.name == name or not old.name.startswith(("snap-", ".tmp-snap-", ".CURRENT-")):
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return root / name


def _current_is(root: Path, name: str) -> bool:
    try:
        return json.loads((root / "CURRENT").read_text(encoding="utf-8")).get("snapshot") == name
    except (OSError, ValueError):
        return False


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The current manifest of an index directory, unverified (to learn its model before loading)."""
    root = Path(path)
    try:
        name = json.loads((root / "CURRENT").read_text(encoding="utf-8"))["snapshot"]
        if not isinstance(name, str) or not _SNAPSHOT.match(name):
            raise ValueError(f"invalid snapshot name {name!r}")
        manifest = json.loads((root / name / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{root} is not a readable m3rag index: {exc}", root) from exc
    if not isinstance(manifest, dict):
        raise IndexFormatError(f"{root} has an invalid manifest", root)
    return manifest


def read_snapshot(path: str | os.PathLike[str], identity: Mapping[str, Any]) -> Snapshot:
    """Find, check and return the current snapshot of ``path``; verify every file's checksum."""
    root = Path(path)
    current = root / "CURRENT"
    if not current.is_file():
        raise IndexFormatError(f"{root} is not an m3rag index: {current} is missing", current)
    try:
        name = json.loads(current.read_text(encoding="utf-8"))["snapshot"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{current} is unreadable or corrupt: {exc}", current) from exc
    if not isinstance(name, str) or not _SNAPSHOT.match(name):
        raise IndexFormatError(f"{current} names {name!r}, which is not a snapshot of this directory", current)
    snapshot = root / name
    manifest_path = snapshot / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{manifest_path} is missing or corrupt: {exc}", manifest_path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{manifest_path} is not an m3rag index manifest", manifest_path)
    if manifest.get("version") != VERSION:
        raise IndexFormatError(
            f"{manifest_path} has format version {manifest.get('version')!r}; this m3rag reads version {VERSION}",
            manifest_path,
        )
    saved = manifest.get("model", {})
    differing = [k for k in _IDENTITY_KEYS if saved.get(k) != identity.get(k)]
    if differing:
        detail = ", ".join(f"{k}: index {saved.get(k)!r} vs encoder {identity.get(k)!r}" for k in differing)
        raise ModelMismatchError(
            f"the index at {root} was built with model {saved.get('name')!r}, not with the encoder's "
            f"{identity.get('name')!r} ({detail})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise IndexFormatError(f"{manifest_path} lists no files", manifest_path)
    for file_name, facts in files.items():
        file_path = snapshot / file_name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", file_name) or file_name.startswith("."):
            raise IndexFormatError(f"{manifest_path} names an invalid file {file_name!r}", manifest_path)
        if not file_path.is_file():
            raise IndexFormatError(f"index file {file_path} is missing", file_path)
        if file_path.stat().st_size != facts.get("bytes") or _sha256(file_path) != facts.get("sha256"):
            raise IndexFormatError(f"index file {file_path} is truncated or corrupt (checksum mismatch)", file_path)
    return {"manifest": manifest, "dir": snapshot}


def load_array(snapshot: Snapshot, name: str, *, mmap: bool = False) -> np.ndarray:
    """A checked ``.npy`` file of the snapshot (``allow_pickle=False``)."""
    path = snapshot["dir"] / name
    if name not in snapshot["manifest"]["files"]:
        raise IndexFormatError(f"index file {path} is not listed in the manifest", path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"index file {path} is unreadable: {exc}", path) from exc


def load_json(snapshot: Snapshot, name: str) -> Any:
    path = snapshot["dir"] / name
    if name not in snapshot["manifest"]["files"]:
        raise IndexFormatError(f"index file {path} is not listed in the manifest", path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"index file {path} is unreadable: {exc}", path) from exc


def save_array(array: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)

    return write


def save_json(obj: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")

    return write
