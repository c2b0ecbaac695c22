"""The fingerprint identifies weights and tokenizer, and nothing else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from m3rag import M3Encoder
from m3rag.testing import build_checkpoint


def test_the_same_weights_anywhere_in_any_dtype_have_one_fingerprint(tiny_checkpoint: Path, encoder: M3Encoder, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))
    config = json.loads((copy / "config.json").read_text())
    config.update(transformers_version="5.99.0", _name_or_path="elsewhere", architectures=["XLMRobertaModel"], output_past=False)
    (copy / "config.json").write_text(json.dumps(config, indent=4))
    assert M3Encoder(copy, device="cpu").fingerprint == encoder.fingerprint
    assert M3Encoder(tiny_checkpoint, device="cpu", dtype="bfloat16").fingerprint == encoder.fingerprint


def test_other_weights_heads_or_tokenizer_change_it(tiny_checkpoint: Path, encoder: M3Encoder, tmp_path: Path) -> None:
    assert M3Encoder(build_checkpoint(tmp_path / "seed1", seed=1), device="cpu").fingerprint != encoder.fingerprint
    nudged = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nudged"))
    weights = load_file(nudged / "model.safetensors")
    weights["encoder.layer.1.output.dense.bias"][-1] += 0.5  # one value at the end of one tensor
    save_file(weights, str(nudged / "model.safetensors"), metadata={"format": "pt"})
    assert M3Encoder(nudged, device="cpu").fingerprint != encoder.fingerprint
    vocab = Path(shutil.copytree(tiny_checkpoint, tmp_path / "vocab"))
    tokenizer = json.loads((vocab / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"][10][0] = "▁renamed"
    (vocab / "tokenizer.json").write_text(json.dumps(tokenizer))
    (vocab / "sentencepiece.bpe.model").unlink()
    assert M3Encoder(vocab, device="cpu").fingerprint != encoder.fingerprint
