"""Crafted index files (valid checksums, hostile content) are refused with an IndexFormatError naming
the file, never a raw Python error, a huge allocation or a file outside the directory."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from m3rag import IndexFormatError, M3Encoder, M3Index
from m3rag.cli import main
from tests.stores.local.conftest import edit_manifest, rewrite, snapshot_dir

DEEP = ("[" * 100_000 + "]" * 100_000).encode()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _huge_header(root: Path) -> str:
    """A .npy header that claims 10**13 float32 values, on a 16-byte body."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": (10**13,)}).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    rewrite(root, "sparse.data.npy", np.lib.format.magic(1, 0) + len(text).to_bytes(2, "little") + text + b"\0" * 16)
    return "sparse.data.npy"


def _faiss_bytes(index: faiss.Index) -> bytes:
    return bytes(faiss.serialize_index(index))


CASES: dict[str, Callable[[Path], str]] = {
    "CURRENT nested 100,000 deep": lambda r: ((r / "CURRENT").write_bytes(DEEP), "CURRENT")[1],
    "manifest nested 100,000 deep": lambda r: ((snapshot_dir(r) / "manifest.json").write_bytes(DEEP), "manifest.json")[1],
    "docs.json nested 100,000 deep": lambda r: (rewrite(r, "docs.json", DEEP), "docs.json")[1],
    "a file entry that is a number": lambda r: (edit_manifest(r, lambda m: m["files"].__setitem__("docs.json", 143)), "manifest.json")[1],
    "model is a list": lambda r: (edit_manifest(r, lambda m: m.__setitem__("model", [1])), "manifest.json")[1],
    "no model": lambda r: (edit_manifest(r, lambda m: m.pop("model")), "manifest.json")[1],
    "ef_search is text": lambda r: (edit_manifest(r, lambda m: m["settings"].__setitem__("ef_search", "abc")), "manifest.json")[1],
    "ef_search is Infinity": lambda r: (edit_manifest(r, lambda m: m["settings"].__setitem__("ef_search", float("inf"))), "manifest.json")[
        1
    ],
    "spans are floats with NaN": lambda r: (rewrite(r, "colbert.spans.npy", _npy(np.full((120, 2), np.nan))), "colbert.spans.npy")[1],
    "indptr holds 0.5": lambda r: (rewrite(r, "sparse.indptr.npy", _npy(np.linspace(0, 0.5, 121))), "sparse.indptr.npy")[1],
    "NaN lexical weight": lambda r: (
        rewrite(r, "sparse.data.npy", _npy(np.full(np.load(snapshot_dir(r) / "sparse.data.npy").shape, np.nan, dtype=np.float32))),
        "sparse.data.npy",
    )[1],
    "an object array": lambda r: (
        rewrite(r, "dense.npy", _npy(np.zeros((120, 64), dtype=np.float32)).replace(b"'<f4'", b"'|O8'")),
        "dense.npy",
    )[1],
    "a header claiming 10**13 values": _huge_header,
    "dense vectors of the wrong shape": lambda r: (rewrite(r, "dense.npy", _npy(np.zeros((3, 64), dtype=np.float32))), "dense.npy")[1],
}


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_file_is_named(case: str, saved: Path, encoder: M3Encoder, capsys: pytest.CaptureFixture[str]) -> None:
    victim = CASES[case](saved)
    with pytest.raises(IndexFormatError, match=victim.replace(".", r"\.")):
        M3Index.load(saved, encoder)
    assert main(["search", str(saved), "query", "--model", str(encoder.path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("m3rag: error:") and err.count("\n") == 1 and victim in err


@pytest.mark.parametrize(
    ("kind", "crafted"),
    [
        ("hnsw", lambda d: faiss.IndexIDMap(faiss.IndexFlatIP(d))),
        ("hnsw", lambda d: faiss.IndexLSH(d, 16)),
        ("hnsw", lambda d: faiss.IndexFlatIP(d)),
        ("hnsw", lambda d: faiss.IndexHNSWFlat(d, 8)),  # L2, not inner product
    ],
)
def test_dense_index_of_another_type_is_refused(
    kind: str, crafted: Callable[[int], faiss.Index], encoder: M3Encoder, tmp_path: Path
) -> None:
    index = M3Index(encoder, dense_index=kind)  # type: ignore[arg-type]
    index.add(["one", "two", "three"])
    index.save(tmp_path / "idx")
    fake = crafted(encoder.dim)
    vectors = np.eye(3, encoder.dim, dtype=np.float32)
    fake.add_with_ids(vectors, np.arange(3)) if isinstance(fake, faiss.IndexIDMap) else fake.add(vectors)
    rewrite(tmp_path / "idx", "dense.hnsw", _npy(np.frombuffer(_faiss_bytes(fake), dtype=np.uint8)))
    with pytest.raises(IndexFormatError, match=r"dense\.hnsw"):
        M3Index.load(tmp_path / "idx", encoder)


def test_version_1_flat_index_holding_hnsw_is_refused(v1_index: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    copy = Path(shutil.copytree(v1_index, tmp_path / "v1"))
    dim = json.loads((snapshot_dir(copy) / "manifest.json").read_text())["model"]["dim"]
    fake = faiss.IndexHNSWFlat(dim, 8, faiss.METRIC_INNER_PRODUCT)
    fake.add(np.eye(40, dim, dtype=np.float32))
    rewrite(copy, "dense.faiss", _faiss_bytes(fake))
    with pytest.raises(IndexFormatError, match=r"dense\.faiss"):
        M3Index.load(copy, M3Encoder(tiny_checkpoint, device="cpu"))


@pytest.mark.parametrize("what", ["file", "snapshot", "CURRENT"])
def test_symlinks_out_of_the_directory_are_refused(what: str, saved: Path, encoder: M3Encoder, tmp_path: Path) -> None:
    snap = snapshot_dir(saved)
    outside = tmp_path / "outside"
    if what == "file":  # same bytes, so the checksum matches: only the link gives it away
        shutil.copy(snap / "docs.json", outside)
        (snap / "docs.json").unlink()
        (snap / "docs.json").symlink_to(outside)
        victim = "docs.json"
    elif what == "snapshot":
        shutil.move(str(snap), outside)
        snap.symlink_to(outside, target_is_directory=True)
        victim = snap.name
    else:
        shutil.copy(saved / "CURRENT", outside)
        (saved / "CURRENT").unlink()
        (saved / "CURRENT").symlink_to(outside)
        victim = "CURRENT"
    with pytest.raises(IndexFormatError, match=victim):
        M3Index.load(saved, encoder)
