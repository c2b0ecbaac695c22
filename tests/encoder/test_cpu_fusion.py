"""The bf16 CPU fusion swaps BERT/XLM-R layers for oneDNN packed products without changing what
they compute: checked in fp32 on every CPU (the swap's wiring), in bf16 where bf16 is native."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from m3rag import BGEEncoder, BGEReranker, M3Encoder
from m3rag._cpu import native_bf16_matmul
from m3rag.encoder.cpu_fusion import PackedLinear, PackedOutput, _fused_ops_work, fuse_cpu_linears, fusion_supported
from m3rag.testing import SAMPLE_TEXTS

TEXTS = list(SAMPLE_TEXTS[:12])
native_bf16 = pytest.mark.skipif(
    not (native_bf16_matmul() and _fused_ops_work()), reason="the fusion applies only where bf16 matrix products are native"
)


def _packed(model: torch.nn.Module) -> int:
    return sum(isinstance(m, (PackedLinear, PackedOutput)) for m in model.modules())


@pytest.mark.parametrize("kind", ["m3", "bert", "reranker"])
def test_fused_layers_compute_what_the_hf_layers_compute(
    kind: str, tiny_checkpoint: Path, bert_checkpoint: Path, reranker_checkpoint: Path
) -> None:
    """fp32 through the same swap (oneDNN runs fp32 on any x86 CPU): outputs equal to 1e-5."""
    loaded = {
        "m3": lambda: M3Encoder(tiny_checkpoint, device="cpu"),
        "bert": lambda: BGEEncoder(bert_checkpoint, device="cpu"),
        "reranker": lambda: BGEReranker(reranker_checkpoint, device="cpu"),
    }[kind]()
    model = loaded.model
    fused = copy.deepcopy(model)
    layers = fuse_cpu_linears(fused)
    assert layers == model.config.num_hidden_layers and _packed(fused) == 6 * layers
    assert not any(type(m) is torch.nn.Linear for m in fused.base_model.encoder.modules())
    ids = [loaded.tokenize(TEXTS, 128)[0][i] for i in range(len(TEXTS))]
    inputs = loaded._collate(ids)
    with torch.inference_mode():
        expected, got = model(**inputs), fused(**inputs)
    key = "logits" if kind == "reranker" else "last_hidden_state"
    mask = inputs["attention_mask"].bool() if key == "last_hidden_state" else slice(None)
    np.testing.assert_allclose(got[key][mask].numpy(), expected[key][mask].numpy(), atol=1e-5)


def test_models_of_another_shape_are_left_alone(tiny_checkpoint: Path) -> None:
    model = M3Encoder(tiny_checkpoint, device="cpu").model
    model.encoder.layer[1].intermediate.intermediate_act_fn = torch.nn.GELU(approximate="tanh")  # not fusable
    before = [type(m) for m in model.modules()]
    assert fuse_cpu_linears(model) == 0 and [type(m) for m in model.modules()] == before
    assert fuse_cpu_linears(torch.nn.Sequential(torch.nn.Linear(4, 4))) == 0


def test_fusion_is_only_for_bf16_on_cpu(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = M3Encoder(tiny_checkpoint, device="cpu").model
    assert not fusion_supported(model, torch.device("cpu"), torch.float32)
    assert not fusion_supported(model, torch.device("cuda"), torch.bfloat16)
    assert fusion_supported(model, torch.device("cpu"), torch.bfloat16) == (native_bf16_matmul() and _fused_ops_work())
    monkeypatch.setenv("M3RAG_CPU_FUSION", "0")
    assert not fusion_supported(model, torch.device("cpu"), torch.bfloat16)
    assert _packed(M3Encoder(tiny_checkpoint, device="cpu").model) == 0  # fp32 is never swapped: parity


@native_bf16
def test_bf16_encoder_is_fused_and_agrees_with_plain_bf16(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fused = M3Encoder(tiny_checkpoint, device="cpu", dtype="bfloat16")
    monkeypatch.setenv("M3RAG_CPU_FUSION", "0")
    plain = M3Encoder(tiny_checkpoint, device="cpu", dtype="bfloat16")
    fp32 = M3Encoder(tiny_checkpoint, device="cpu")
    assert _packed(fused.model) > 0 and _packed(plain.model) == 0
    options = dict(return_sparse=True, return_colbert_vecs=True)
    a, b, ref = fused.encode(TEXTS, **options), plain.encode(TEXTS, **options), fp32.encode(TEXTS, **options)
    assert (a.dense * ref.dense).sum(axis=1).min() > 0.995  # the fidelity bound bf16 is held to
    assert (a.dense * b.dense).sum(axis=1).min() > 0.999
    cos = (a.colbert * b.colbert).sum(axis=1)
    assert cos.mean() > 0.999 and (a.colbert_offsets == b.colbert_offsets).all()
