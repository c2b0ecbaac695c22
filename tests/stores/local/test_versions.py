"""Indexes saved by m3rag 0.1 (format version 1, the old fingerprint) still load, and only with their own model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from m3rag import M3Encoder, M3Index, ModelMismatchError
from m3rag.testing import build_checkpoint
from tests.helpers import IDS


def test_a_version_1_index_loads_with_its_model_and_saves_as_version_2(v1_index: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    old = json.loads(next(v1_index.glob("snap-*/manifest.json")).read_text())
    encoder = M3Encoder(tiny_checkpoint, device="cpu")
    assert old["version"] == 1 and old["model"]["fingerprint"] != encoder.fingerprint  # the 0.1 fingerprint scheme
    index = M3Index.load(v1_index, encoder)
    assert index.ids == IDS[:40]
    hits = index.search("bread", k=3, rerank="colbert")
    copy = tmp_path / "copy"
    shutil.copytree(v1_index, copy)
    M3Index.load(copy, encoder).save(copy)  # migrated on save
    new = json.loads(next(copy.glob("snap-*/manifest.json")).read_text())
    assert new["version"] == 2 and new["model"]["fingerprint"] == encoder.fingerprint
    again = M3Index.load(copy, encoder)
    assert [(h.id, round(h.score, 6)) for h in again.search("bread", k=3, rerank="colbert")] == [(h.id, round(h.score, 6)) for h in hits]


def test_a_version_1_index_refuses_another_model(v1_index: Path, tmp_path: Path) -> None:
    other = M3Encoder(build_checkpoint(tmp_path / "other", seed=1), device="cpu")
    with pytest.raises(ModelMismatchError, match="gives other vectors"):
        M3Index.load(v1_index, other)


def test_an_index_survives_a_moved_model_and_another_transformers(
    saved: Path, tiny_checkpoint: Path, tmp_path: Path, encoder: M3Encoder
) -> None:
    moved = Path(shutil.copytree(tiny_checkpoint, tmp_path / "moved-model"))
    config = json.loads((moved / "config.json").read_text())
    config["transformers_version"] = "9.99.0"  # what an upgrade rewrites
    config["_name_or_path"] = "/somewhere/else"
    (moved / "config.json").write_text(json.dumps(config))
    relocated = M3Encoder(moved, device="cpu")
    assert relocated.fingerprint == encoder.fingerprint
    index = M3Index.load(saved, relocated)
    assert index.encoder is relocated and len(index) > 0
