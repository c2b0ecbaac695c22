from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from m3rag import IndexFormatError, M3Encoder, M3Index, ModelMismatchError, StoreError
from m3rag.stores.local import snapshot
from m3rag.testing import build_checkpoint
from tests.helpers import DOCS, IDS, METAS, QUERIES


def _same_results(a: M3Index, b: M3Index) -> None:
    for query in QUERIES:
        for kwargs in (dict(mode="dense"), dict(mode="sparse"), dict(rerank="hybrid"), dict(fusion="rrf")):
            x, y = a.search(query, k=5, **kwargs), b.search(query, k=5, **kwargs)  # type: ignore[arg-type]
            assert [h.id for h in x] == [h.id for h in y]
            np.testing.assert_allclose([h.score for h in x], [h.score for h in y], atol=1e-6)


@pytest.fixture
def saved(index: M3Index, tmp_path: Path) -> Path:
    path = tmp_path / "idx"
    index.save(path)
    return path


def test_round_trip(index: M3Index, saved: Path, encoder: M3Encoder) -> None:
    loaded = M3Index.load(saved, encoder)
    assert loaded.ids == index.ids
    assert loaded.get(IDS[:3]) == index.get(IDS[:3])
    _same_results(index, loaded)
    manifest = json.loads(next(saved.glob("snap-*/manifest.json")).read_text())
    assert manifest["format"] == "m3rag-index" and manifest["version"] == 2
    assert manifest["model"]["fingerprint"] == encoder.fingerprint and manifest["count"] == len(DOCS)


def test_round_trip_after_deletes_and_without_colbert(encoder: M3Encoder, tmp_path: Path) -> None:
    idx = M3Index(encoder, store_colbert=False, dense_index="hnsw")
    idx.add(DOCS[:30], ids=IDS[:30], metadatas=METAS[:30])
    idx.delete(IDS[5:10])
    idx.save(tmp_path / "i")
    loaded = M3Index.load(tmp_path / "i", encoder)
    assert loaded.ids == idx.ids and not loaded.store_colbert and loaded.store.dense_kind == "hnsw"
    _same_results(idx, loaded)
    loaded.add(["a new one"], ids=["new"])  # a loaded index keeps growing
    assert loaded.search("a new one", k=1, mode="dense")[0].id == "new"


def test_resave_replaces_and_keeps_one_snapshot(index: M3Index, saved: Path, encoder: M3Encoder) -> None:
    small = M3Index(encoder)
    small.add(["only one"], ids=["x"])
    small.save(saved)
    assert M3Index.load(saved, encoder).ids == ["x"]
    assert len(list(saved.glob("snap-*"))) == 1 and not list(saved.glob(".tmp-*"))


def test_failed_save_leaves_previous_index_intact(index: M3Index, saved: Path, encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    other = M3Index(encoder)
    other.add(["replacement"], ids=["r"])

    def broken(obj: object):  # type: ignore[no-untyped-def]
        def write(f) -> None:  # type: ignore[no-untyped-def]
            f.write(b"partial")
            raise OSError("disk full")

        return write

    monkeypatch.setattr(snapshot, "save_json", broken)
    with pytest.raises(OSError, match="disk full"):
        other.save(saved)
    monkeypatch.undo()
    loaded = M3Index.load(saved, encoder)
    assert loaded.ids == index.ids
    assert len(list(saved.glob("snap-*"))) == 1 and not list(saved.glob(".tmp-*"))


def test_a_write_cut_short_is_never_saved(encoder: M3Encoder, tmp_path: Path) -> None:
    """A signal landing inside a write (dense rows added, ids not yet) must not replace the last snapshot."""
    index = M3Index(encoder)
    index.add(DOCS[:3], ids=IDS[:3])
    index.save(tmp_path / "idx")
    index.store._dense.add(encoder.encode(["half-written"]).dense)  # type: ignore[attr-defined]  # a write's first step, alone
    with pytest.raises(StoreError, match="inconsistent"):
        index.save(tmp_path / "idx")
    assert M3Index.load(tmp_path / "idx", encoder).ids == IDS[:3]  # the previous snapshot, complete


def test_crash_before_commit_point_keeps_previous(index: M3Index, saved: Path, encoder: M3Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    other = M3Index(encoder)
    other.add(["replacement"], ids=["r"])
    real_replace = os.replace

    def replace(src, dst):  # type: ignore[no-untyped-def]
        if Path(dst).name == "CURRENT":
            raise KeyboardInterrupt  # the process dies just before the commit point
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        other.save(saved)
    monkeypatch.undo()
    assert M3Index.load(saved, encoder).ids == index.ids


def test_loading_with_another_model_is_refused(saved: Path, tmp_path: Path) -> None:
    other = M3Encoder(build_checkpoint(tmp_path / "other", seed=1), device="cpu")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        M3Index.load(saved, other)


@pytest.mark.parametrize("victim", ["dense.npy", "sparse.data.npy", "docs.json", "colbert.seg-*.npy", "colbert.spans.npy", "manifest.json"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_files_are_named(saved: Path, encoder: M3Encoder, victim: str, damage: str) -> None:
    path = next(next(saved.glob("snap-*")).glob(victim))
    victim = path.name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        pos = len(data) // 2
        path.write_bytes(data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :])
    else:
        path.unlink()
    with pytest.raises(IndexFormatError, match=victim) as info:
        M3Index.load(saved, encoder)
    assert info.value.path is not None and info.value.path.name == victim


@pytest.mark.parametrize("pointer", ['{"snapshot": "../outside"}', '{"snapshot": "/etc"}', "not json", "{}"])
def test_current_cannot_point_outside(saved: Path, encoder: M3Encoder, pointer: str) -> None:
    (saved / "CURRENT").write_text(pointer)
    with pytest.raises(IndexFormatError, match="CURRENT"):
        M3Index.load(saved, encoder)


def test_manifest_cannot_name_files_outside(saved: Path, encoder: M3Encoder) -> None:
    manifest_path = next(saved.glob("snap-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["../../escape"] = {"bytes": 1, "sha256": "0"}
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="invalid file"):
        M3Index.load(saved, encoder)


def test_missing_index_and_foreign_directories(tmp_path: Path, encoder: M3Encoder, index: M3Index) -> None:
    with pytest.raises(IndexFormatError, match="not an m3rag index"):
        M3Index.load(tmp_path / "nothing", encoder)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(IndexFormatError, match="refusing"):
        index.save(foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_newer_format_version_is_refused(saved: Path, encoder: M3Encoder) -> None:
    manifest_path = next(saved.glob("snap-*/manifest.json"))
    manifest = json.loads(manifest_path.read_text())
    manifest["version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99"):
        M3Index.load(saved, encoder)
