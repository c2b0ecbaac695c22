from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from io import BytesIO
from pathlib import Path

import pytest

from m3rag import M3Encoder, M3Index
from tests.helpers import DOCS, IDS, METAS

REPO = Path(__file__).resolve().parents[3]
V1_COMMIT = "a60d852"
"""The last commit of m3rag 0.1, whose index format is version 1."""


@pytest.fixture
def saved(index: M3Index, tmp_path: Path) -> Path:
    path = tmp_path / "idx"
    index.save(path)
    return path


def snapshot_dir(root: Path) -> Path:
    return root / json.loads((root / "CURRENT").read_text())["snapshot"]


def rewrite(root: Path, name: str, data: bytes) -> Path:
    """Replace ``name`` in the current snapshot and record its new size and checksum in the
    manifest, as an attacker with write access could: only content checks can catch it."""
    snap = snapshot_dir(root)
    (snap / name).write_bytes(data)
    manifest_path = snap / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))
    return snap / name


def edit_manifest(root: Path, edit: object) -> None:
    path = snapshot_dir(root) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)  # type: ignore[operator]
    path.write_text(json.dumps(manifest))


@pytest.fixture(scope="session")
def v1_index(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index saved by m3rag 0.1 itself (its code from git history, run in a subprocess)."""
    root = tmp_path_factory.mktemp("m3rag-0.1")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", V1_COMMIT, "m3rag"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root / "code", filter="data")
    script = textwrap.dedent(
        f"""
        import json, sys
        from m3rag import M3Encoder, M3Index
        index = M3Index(M3Encoder(sys.argv[1], device="cpu"), colbert_dtype="float32")
        index.add({DOCS[:40]!r}, ids={IDS[:40]!r}, metadatas={METAS[:40]!r})
        index.save(sys.argv[2])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(root / "code")}
    subprocess.run([sys.executable, "-c", script, str(tiny_checkpoint), str(root / "index")], check=True, cwd=root / "code", env=env)
    return root / "index"


def encoder_for(path: Path) -> M3Encoder:
    return M3Encoder(path, device="cpu")
