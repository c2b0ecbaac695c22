"""bf16 stays close to fp32 (the README's fidelity targets, asserted on the small checkpoint)."""

from __future__ import annotations

from pathlib import Path

from m3rag import M3Encoder
from m3rag.testing import SAMPLE_TEXTS
from m3rag.testing.fidelity import compare_encoders


def test_bf16_fidelity_bounds(encoder: M3Encoder, tiny_checkpoint: Path) -> None:
    bf16 = M3Encoder(tiny_checkpoint, device="cpu", dtype="bfloat16")
    report = compare_encoders(encoder, bf16, list(SAMPLE_TEXTS), [t[:40] for t in SAMPLE_TEXTS[::5]])
    assert report["dense_cosine_mean"] >= 0.999 and report["dense_cosine_worst"] >= 0.995
    assert report["lexical_rel_error_mean"] <= 0.05
    assert report["colbert_score_error_mean"] <= 0.005
    assert min(report["top10_dense"], report["top10_sparse"], report["top10_hybrid"]) >= 0.9


def test_fp32_against_itself_is_exact(encoder: M3Encoder) -> None:
    report = compare_encoders(encoder, encoder, list(SAMPLE_TEXTS[:60]), list(SAMPLE_TEXTS[:5]))
    assert report["dense_cosine_worst"] > 0.99999 and report["lexical_abs_error_worst"] == 0.0
    assert report["top10_dense"] == report["top10_sparse"] == report["top10_hybrid"] == 1.0
