"""A corpus and index comparison for the ``m3rag index --ray`` tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from m3rag import M3Index
from m3rag.testing import SAMPLE_TEXTS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "corpus"


def make_corpus(directory: Path, files: int) -> Path:
    """The example corpus plus ``files`` generated notes of 10-40 sample texts each."""
    shutil.copytree(EXAMPLES, directory)
    (directory / "notes").mkdir()
    for i in range(files):
        start = (i * 7) % 150
        (directory / "notes" / f"note{i:03d}.md").write_text("\n\n".join(SAMPLE_TEXTS[start : start + 10 + i % 30]), encoding="utf-8")
    return directory


def assert_same_index(got: M3Index, want: M3Index) -> None:
    """Same ids in the same order, same texts and metadata; vectors equal to float tolerance
    (ColBERT within float16's)."""
    assert got.ids == want.ids
    for a, b in zip(got.get(got.ids), want.get(want.ids)):
        assert (a.id, a.text, a.metadata) == (b.id, b.text, b.metadata)
    mine = {i: (ids, out) for i, (ids, _, _, out) in enumerate(got.store.export(10_000))}
    theirs = {i: (ids, out) for i, (ids, _, _, out) in enumerate(want.store.export(10_000))}
    assert mine.keys() == theirs.keys()
    for (ids_a, a), (ids_b, b) in zip(mine.values(), theirs.values()):
        assert ids_a == ids_b
        np.testing.assert_allclose(a.dense, b.dense, atol=1e-6, rtol=0)  # type: ignore[arg-type]
        assert a.sparse is not None and b.sparse is not None
        np.testing.assert_array_equal(a.sparse.indices, b.sparse.indices)
        np.testing.assert_allclose(a.sparse.data, b.sparse.data, atol=1e-6, rtol=0)
        if b.colbert is not None:
            np.testing.assert_array_equal(a.colbert_offsets, b.colbert_offsets)
            np.testing.assert_allclose(a.colbert, b.colbert, atol=1e-3, rtol=0)  # type: ignore[arg-type]
