"""A worker killed mid-job: Ray restarts the actor and encodes its unfinished blocks again; the
result (and the index built from it) loses nothing and holds nothing twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from m3rag import M3Encoder, M3Index
from m3rag.cli import main
from tests.helpers import DOCS

from .conftest import actor_processes, kill_busy_actor
from .helpers import assert_same_index, make_corpus

ray = pytest.importorskip("ray")

from m3rag.distributed import encode_dataset, iter_encoded  # noqa: E402

pytestmark = pytest.mark.service

TEXTS = [" ".join(DOCS[i % 100 : i % 100 + 1 + i % 7]) for i in range(600)]


def test_a_killed_actor_loses_and_duplicates_no_row(ray_cluster: None, tiny_checkpoint: Path, encoder: M3Encoder) -> None:
    ds = ray.data.from_items([{"id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)], override_num_blocks=40)
    encoded = encode_dataset(ds, model=tiny_checkpoint, num_gpus=0, concurrency=2, dtype="float32", block_rows=4)
    batches: list[Any] = []
    first = threading.Event()

    def consume() -> None:
        for batch in iter_encoded(encoded, vocab_size=encoder.vocab_size, fingerprint=encoder.fingerprint, batch_size=16):
            batches.append(batch)
            first.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert first.wait(120), "no result within 120 s"
    before = set(actor_processes("M3EncodeActor"))
    killed = kill_busy_actor("M3EncodeActor")  # in the middle of a block
    assert killed in before
    consumer.join(300)
    assert not consumer.is_alive()
    ids = [i for b in batches for i in b.ids]
    assert len(ids) == len(TEXTS) and set(ids) == {f"t{i}" for i in range(len(TEXTS))}  # each row exactly once
    want = encoder.encode(TEXTS, return_sparse=True, return_colbert_vecs=True)
    for batch in batches:
        rows = [int(i[1:]) for i in batch.ids]
        assert batch.texts == [TEXTS[r] for r in rows]
        np.testing.assert_allclose(batch.vectors.dense, want.dense[rows], atol=1e-6, rtol=0)  # type: ignore[index]
        got_weights, want_weights = batch.vectors.lexical_weights, want.lexical_weights
        for j, r in enumerate(rows):
            assert got_weights[j].keys() == want_weights[r].keys()  # type: ignore[index]
            np.testing.assert_allclose(list(got_weights[j].values()), list(want_weights[r].values()), atol=1e-6)  # type: ignore[index]
            np.testing.assert_allclose(batch.vectors.colbert_vecs[j], want.colbert_vecs[r], atol=1e-3)  # type: ignore[index]


def test_a_killed_actor_changes_nothing_in_the_index(
    ray_cluster: None, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    corpus = make_corpus(tmp_path / "corpus", 120)
    options = ["--chunk-tokens", "32", "--overlap", "4", "--batch", "4"]
    assert main(["index", str(corpus), "--index", str(tmp_path / "ref"), *options]) == 0
    real, stored, killed = M3Index.add_encoded, [], []

    def add_encoded(self: M3Index, *args: Any, **kwargs: Any) -> list[str]:
        if not stored:  # results are coming in: kill a busy actor while the rest is still being encoded
            killer = threading.Thread(target=lambda: killed.append(kill_busy_actor("FileEncodeActor")))
            killer.start()
            killer.join()
        stored.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(M3Index, "add_encoded", add_encoded)
    code = main(["index", str(corpus), "--index", str(tmp_path / "ray"), *options, "--ray", "--workers", "2"])
    monkeypatch.undo()
    assert code == 0 and killed, capsys.readouterr().err
    assert capsys.readouterr().out.count("128 files (re)indexed") == 2
    assert_same_index(M3Index.load(tmp_path / "ray"), M3Index.load(tmp_path / "ref"))
