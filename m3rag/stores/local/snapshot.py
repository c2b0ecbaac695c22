"""An index directory: atomic, locked, checksummed snapshots of plain-data files (no pickle).

Layout of ``root/``::

    CURRENT            {"snapshot": "snap-<32 hex>"}, replaced atomically (os.replace)
    LOCK               flock'd: exclusive by a writer, shared by readers
    snap-<32 hex>/     one complete snapshot: manifest.json and the files it lists

A save writes a new snapshot beside the current one under the exclusive lock, fsyncs it, swaps
``CURRENT`` (the commit point), then removes older snapshots and leftovers of interrupted saves:
a crash at any moment leaves ``CURRENT`` naming a complete snapshot, and two writers never delete
each other's work. Files that did not change (ColBERT segments) are hard-linked from the previous
snapshot instead of rewritten. Reading checks every name, refuses symlinks and anything outside
the directory, and hashes exactly the bytes it parses (memory-mapped files are hashed and mapped
through one open file).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from m3rag.errors import IndexFormatError, IndexLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no inter-process lock (documented)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT",
    "LOCK_TIMEOUT",
    "VERSION",
    "Existing",
    "Snapshot",
    "is_index_dir",
    "open_snapshot",
    "read_manifest",
    "write_snapshot",
]

FORMAT = "m3rag-index"
VERSION = 2
READABLE_VERSIONS = (1, 2)
LOCK_TIMEOUT = 60.0
"""Seconds a save or load waits for another process's lock before :class:`IndexLockedError`."""

_SNAPSHOT = re.compile(r"^snap-[0-9a-f]{32}$")
_LEFTOVER = re.compile(r"^(snap-[0-9a-f]{32}|\.tmp-snap-[0-9a-f]{32}|\.CURRENT-snap-[0-9a-f]{32})$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_SMALL_JSON = 16 << 20  # CURRENT and manifest.json are small; a larger one is not ours
_NPY_KINDS = "biuf"  # bool, int, uint, float: never object, string or structured arrays


def _json_loads(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested input
        raise IndexFormatError(f"{path} is not valid JSON: {str(exc)[:200]}", path) from None


# ------------------------------------------------------------------------------------------ lock
class DirectoryLock:
    """``flock`` on ``root/LOCK``: exclusive for writers, shared for readers; waits ``timeout`` s."""

    def __init__(self, root: Path, *, exclusive: bool, timeout: float = LOCK_TIMEOUT) -> None:
        self.root, self.exclusive, self.timeout = root, exclusive, timeout
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        if fcntl is None:  # pragma: no cover
            return self  # type: ignore[unreachable]
        path = self.root / "LOCK"
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except PermissionError:
            if self.exclusive:
                raise
            return self  # a read-only index directory: no writer can be there either
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IndexFormatError(f"{path} is a symlink: refusing to use it", path) from None
            raise
        mode = (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self._fd, mode)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self._fd)
                    self._fd = None
                    raise IndexLockedError(
                        f"{self.root} is locked by another {'reader or writer' if self.exclusive else 'writer'} "
                        f"(waited {self.timeout:g} s)",
                        self.root,
                    ) from None
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------------------------------ write
@dataclass(frozen=True)
class Existing:
    """A file of an earlier snapshot that did not change: hard-linked (or copied) into the new one.

    ``facts`` are its recorded ``{"bytes", "sha256"}``; ``fallback`` writes the same bytes when the
    old file is gone (another process's save removed that snapshot)."""

    path: Path
    facts: Mapping[str, Any]
    fallback: Callable[[IO[bytes]], None]


Writer = Callable[[IO[bytes]], None] | Existing


class _HashingWriter(io.RawIOBase):
    """A file object that hashes what goes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f, self.digest, self.size = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self._f.write(view)
        self.size += len(view)
        return len(view)


def _write_file(target: Path, write: Callable[[IO[bytes]], None]) -> dict[str, Any]:
    with open(target, "xb") as f:
        hashing = _HashingWriter(f)
        write(hashing)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": hashing.size, "sha256": hashing.digest.hexdigest()}


def _place(target: Path, writer: Writer) -> dict[str, Any]:
    if not isinstance(writer, Existing):
        return _write_file(target, writer)
    try:
        os.link(writer.path, target, follow_symlinks=False)
        if target.stat().st_size == writer.facts.get("bytes"):
            return dict(writer.facts)
        target.unlink()
    except OSError:
        pass  # gone, or another file system: write the bytes again
    return _write_file(target, writer.fallback)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_index_dir(root: Path) -> bool:
    """True if ``root`` holds an index or only what an interrupted first save leaves behind."""
    return all(entry.name in ("CURRENT", "LOCK") or _LEFTOVER.match(entry.name) for entry in root.iterdir())


def write_snapshot(
    path: str | os.PathLike[str], files: Mapping[str, Writer], manifest: Mapping[str, Any], *, timeout: float = LOCK_TIMEOUT
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Write ``files`` (name -> writer or :class:`Existing`) and ``manifest`` as a new snapshot of
    ``path`` and make it current; returns the snapshot directory and each file's facts
    (``{"bytes", "sha256"}``). ``path`` must be absent, empty, or an index directory (leftovers of
    an interrupted save are cleaned, not refused)."""
    root = Path(path)
    if root.is_symlink():
        raise IndexFormatError(f"{root} is a symlink: refusing to write an index through it", root)
    if root.exists() and (not root.is_dir() or not is_index_dir(root)):
        raise IndexFormatError(f"{root} exists and is not an m3rag index directory: refusing to write into it", root)
    root.mkdir(parents=True, exist_ok=True)
    for name in files:
        if not _FILE_NAME.match(name) or name == "manifest.json":
            raise ValueError(f"invalid index file name {name!r}")
    with DirectoryLock(root, exclusive=True, timeout=timeout):
        name = f"snap-{uuid.uuid4().hex}"
        staging = root / f".tmp-{name}"
        staging.mkdir()
        try:
            facts = {file_name: _place(staging / file_name, writer) for file_name, writer in files.items()}
            full = {"format": FORMAT, "version": VERSION, **manifest, "files": facts}
            _write_file(staging / "manifest.json", save_bytes(json.dumps(full, indent=1, ensure_ascii=False).encode("utf-8")))
            _fsync_dir(staging)
            os.replace(staging, root / name)
            pointer = root / f".CURRENT-{name}"
            _write_file(pointer, save_bytes(json.dumps({"snapshot": name}).encode("utf-8")))
            os.replace(pointer, root / "CURRENT")  # the commit point
            _fsync_dir(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            (root / f".CURRENT-{name}").unlink(missing_ok=True)
            if _current_name(root) != name:
                shutil.rmtree(root / name, ignore_errors=True)
            raise
        # Under the lock no other save is in progress: everything but the new snapshot is old.
        for entry in root.iterdir():
            if entry.name != name and _LEFTOVER.match(entry.name):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    return root / name, facts


def _current_name(root: Path) -> str | None:
    try:
        value = json.loads((root / "CURRENT").read_text(encoding="utf-8")).get("snapshot")
        return value if isinstance(value, str) else None
    except (OSError, ValueError, AttributeError, RecursionError):
        return None


# ------------------------------------------------------------------------------------------ read
def _open_regular(path: Path) -> int:
    """An fd of ``path``, which must be a regular file and not a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise IndexFormatError(f"index file {path} is missing", path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IndexFormatError(f"index file {path} is a symlink: refusing to follow it", path) from None
        raise IndexFormatError(f"index file {path} is unreadable: {exc}", path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IndexFormatError(f"index file {path} is not a regular file", path)
    return fd


def _read_small(path: Path, limit: int = _MAX_SMALL_JSON) -> bytes:
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise IndexFormatError(f"{path} is larger than {limit} bytes: not an m3rag index file", path)
    return data


def _snapshot_dir(root: Path) -> tuple[Path, str]:
    current = root / "CURRENT"
    if root.is_symlink():
        raise IndexFormatError(f"{root} is a symlink: refusing to read an index through it", root)
    if not current.exists() and not current.is_symlink():
        raise IndexFormatError(f"{root} is not an m3rag index: {current} is missing", current)
    pointer = _json_loads(_read_small(current), current)
    name = pointer.get("snapshot") if isinstance(pointer, dict) else None
    if not isinstance(name, str) or not _SNAPSHOT.match(name):
        raise IndexFormatError(f"{current} names {name!r}, which is not a snapshot of this directory", current)
    snapshot = root / name
    if snapshot.is_symlink() or not snapshot.is_dir():
        raise IndexFormatError(f"{current} names {name}, which is missing or not a directory of {root}", current)
    return snapshot, name


def _object(manifest: Mapping[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = manifest.get(key)
    if not isinstance(value, dict):
        raise IndexFormatError(f"{path}: {key!r} is missing or not an object", path)
    return value


def _check_manifest(manifest: Any, path: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is not an m3rag index manifest", path)
    version = manifest.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise IndexFormatError(f"{path} has format version {version!r}; this m3rag reads versions {READABLE_VERSIONS}", path)
    model = _object(manifest, "model", path)
    if not isinstance(model.get("name"), str):
        raise IndexFormatError(f"{path}: model.name is missing or not a str", path)
    for key in ("dim", "vocab_size"):
        if not isinstance(model.get(key), int) or isinstance(model.get(key), bool) or model[key] < 1:
            raise IndexFormatError(f"{path}: model.{key} must be a positive integer", path)
    if model.get("colbert_dim") is not None and (
        not isinstance(model["colbert_dim"], int) or isinstance(model["colbert_dim"], bool) or model["colbert_dim"] < 1
    ):
        raise IndexFormatError(f"{path}: model.colbert_dim must be a positive integer or null", path)
    if not isinstance(model.get("fingerprint"), str):
        raise IndexFormatError(f"{path}: model.fingerprint is missing", path)
    count = manifest.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise IndexFormatError(f"{path}: count must be a non-negative integer", path)
    _object(manifest, "settings", path)
    files = _object(manifest, "files", path)
    for name, facts in files.items():
        if not isinstance(name, str) or not _FILE_NAME.match(name) or name == "manifest.json":
            raise IndexFormatError(f"{path} names an invalid file {name!r}", path)
        if (
            not isinstance(facts, dict)
            or not isinstance(facts.get("bytes"), int)
            or isinstance(facts.get("bytes"), bool)
            or facts["bytes"] < 0
            or not isinstance(facts.get("sha256"), str)
            or not _SHA256.match(facts["sha256"])
        ):
            raise IndexFormatError(f"{path}: the entry of {name!r} must be {{bytes: int, sha256: hex}}", path)
    return manifest


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The current manifest of an index directory, checked for shape but not against its files
    (to learn its model and settings before loading)."""
    root = Path(path)
    snapshot, _ = _snapshot_dir(root)
    manifest_path = snapshot / "manifest.json"
    return _check_manifest(_json_loads(_read_small(manifest_path), manifest_path), manifest_path)


@dataclass
class Snapshot:
    """The current snapshot of an index directory; every read is checked against the manifest."""

    root: Path
    dir: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return self.manifest["files"]  # type: ignore[no-any-return]

    def path(self, name: str) -> Path:
        if name not in self.files:
            raise IndexFormatError(f"index file {self.dir / name} is not listed in {self.dir / 'manifest.json'}", self.dir / name)
        return self.dir / name

    def _verified_fd(self, name: str) -> tuple[int, Path]:
        path = self.path(name)
        fd = _open_regular(path)
        if os.fstat(fd).st_size != self.files[name]["bytes"]:
            os.close(fd)
            raise IndexFormatError(f"index file {path} is truncated or corrupt (size differs from the manifest)", path)
        return fd, path

    def _check_digest(self, digest: Any, name: str, path: Path) -> None:
        if digest.hexdigest() != self.files[name]["sha256"]:
            raise IndexFormatError(f"index file {path} is truncated or corrupt (checksum mismatch)", path)

    def read(self, name: str) -> bytes:
        """The verified bytes of ``name`` (read once, hashed, returned)."""
        fd, path = self._verified_fd(name)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        self._check_digest(hashlib.sha256(data), name, path)
        return data

    def json(self, name: str) -> Any:
        return _json_loads(self.read(name), self.path(name))

    def array(self, name: str, *, mmap: bool = False, dtype_kinds: str = _NPY_KINDS) -> np.ndarray:
        """A verified ``.npy`` file: header checked against the file size, plain numeric dtypes only.
        With ``mmap``, the file is hashed and mapped through the same open file (read-only)."""
        if not mmap:
            data = self.read(name)
            shape, dtype, offset = _npy_header(io.BytesIO(data), len(data), self.path(name), dtype_kinds)
            array: np.ndarray = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape).copy()
            return array
        fd, path = self._verified_fd(name)
        with os.fdopen(fd, "rb") as f:
            digest = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
            self._check_digest(digest, name, path)
            f.seek(0)
            shape, dtype, offset = _npy_header(f, self.files[name]["bytes"], path, dtype_kinds)
            if int(np.prod(shape)) == 0:
                return np.zeros(shape, dtype=dtype)
            mapped: np.ndarray = np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)
            return mapped


def _npy_header(f: IO[bytes], size: int, path: Path, kinds: str) -> tuple[tuple[int, ...], np.dtype, int]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise IndexFormatError(f"index file {path} is not a valid .npy file: {exc}", path) from None
    offset = f.tell()
    if fortran or dtype.kind not in kinds or dtype.hasobject or dtype.fields is not None:
        raise IndexFormatError(f"index file {path} holds a {dtype} {'Fortran-order ' if fortran else ''}array, not plain numbers", path)
    if any(not isinstance(d, int) or d < 0 for d in shape) or int(np.prod(shape, dtype=object)) * dtype.itemsize != size - offset:
        raise IndexFormatError(f"index file {path} claims shape {shape} of {dtype}, which does not match its size of {size} bytes", path)
    return tuple(shape), dtype, offset


@contextlib.contextmanager
def open_snapshot(path: str | os.PathLike[str], *, timeout: float = LOCK_TIMEOUT) -> Iterator[Snapshot]:
    """The current snapshot, with a shared lock held while it is read (no save can remove it)."""
    root = Path(path)
    if not (root / "CURRENT").exists() and not (root / "CURRENT").is_symlink():
        raise IndexFormatError(f"{root} is not an m3rag index: {root / 'CURRENT'} is missing", root / "CURRENT")
    with DirectoryLock(root, exclusive=False, timeout=timeout):
        snapshot, _ = _snapshot_dir(root)
        manifest_path = snapshot / "manifest.json"
        manifest = _check_manifest(_json_loads(_read_small(manifest_path), manifest_path), manifest_path)
        yield Snapshot(root, snapshot, manifest)


def save_npy(array: np.ndarray) -> Callable[[IO[bytes]], None]:
    """A writer of ``array`` as ``.npy`` (no pickle)."""

    def write(f: IO[bytes]) -> None:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)

    return write


def save_bytes(data: bytes) -> Callable[[IO[bytes]], None]:
    def write(f: IO[bytes]) -> None:
        f.write(data)

    return write


def save_json(obj: Any) -> Callable[[IO[bytes]], None]:
    return save_bytes(json.dumps(obj, ensure_ascii=False).encode("utf-8"))
