"""bf16 on CPU: the encoder's linear layers as oneDNN prepacked products, with GELU and residual fused.

HF's BERT-style layers call ``nn.Linear`` (``addmm``: the bias is first copied into the output,
and the weight comes in its plain layout, which the AMX kernels re-block on every call), then
GELU and the residual add as separate passes over memory. Here each linear keeps its weight in oneDNN's blocked layout, and
the epilogues run inside the product: ``gelu(x W^T + b)`` for the FFN's first layer,
``x W^T + b + residual`` before each LayerNorm. Only the arithmetic's rounding points change
(bf16 outputs agree with unfused bf16 to bf16 rounding). The layers are swapped in place; a model
whose layers do not have the BERT/XLM-R shape is left as it was. ``M3RAG_CPU_FUSION=0`` in the
environment turns the swap off (plain HF layers, bf16 still).
"""

from __future__ import annotations

import functools
import logging
import os

import torch
from torch import nn

__all__ = ["PackedLinear", "PackedOutput", "fuse_cpu_linears", "fusion_supported"]

logger = logging.getLogger(__name__)

_BATCH_HINT = 2048
"""Rows per product the weight layout is tuned for (the CPU token budget per batch)."""


def fusion_supported(model: nn.Module, device: torch.device, dtype: torch.dtype) -> bool:
    """True for a bf16 model on a CPU whose oneDNN runs bf16 natively (AMX or AVX512-BF16), unless
    ``M3RAG_CPU_FUSION=0``."""
    from m3rag._cpu import native_bf16_matmul

    return (
        os.environ.get("M3RAG_CPU_FUSION", "1").strip() not in ("0", "false", "no", "off")
        and device.type == "cpu"
        and dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and native_bf16_matmul()
        and not model.training
        and _fused_ops_work()
    )


@functools.cache
def _fused_ops_work() -> bool:
    """This torch has the oneDNN ops used here and they compute a small bf16 product right."""
    try:
        x = torch.linspace(-1, 1, 16).reshape(2, 8).bfloat16()
        w, b = torch.linspace(-0.5, 0.5, 32).reshape(4, 8).bfloat16(), torch.linspace(-0.1, 0.1, 4).bfloat16()
        weight, bias = torch.ops.mkldnn._reorder_linear_weight(w, _BATCH_HINT), b
        expected = torch.nn.functional.linear(x, w, b).float()
        plain = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "").float()
        added = torch.ops.mkldnn._linear_pointwise.binary(x, x[:, :4].contiguous(), weight, bias, "add").float()
    except (AttributeError, RuntimeError) as exc:  # an older torch, or oneDNN without a bf16 kernel here
        logger.debug("bf16 CPU fusion unavailable: %s", exc)
        return False
    return bool(torch.allclose(plain, expected, atol=0.05) and torch.allclose(added, expected + x[:, :4].float(), atol=0.05))


def _pack(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), _BATCH_HINT)
    return weight, None if linear.bias is None else linear.bias.detach()


class PackedLinear(nn.Module):  # type: ignore[misc]  # torch is untyped to mypy here
    """``act(x @ W.T + b)`` with ``W`` in oneDNN's layout; ``activation``: ``"none"`` or ``"gelu"`` (erf)."""

    def __init__(self, linear: nn.Linear, activation: str = "none") -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.activation = activation
        self.weight, self.bias = _pack(linear)  # plain attributes, as nn.Linear names them (dtype, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        algorithm = "none" if self.activation == "gelu" else ""
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.activation, [], algorithm)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}, oneDNN packed"


class PackedOutput(nn.Module):  # type: ignore[misc]
    """A BERT ``*Output`` block: ``LayerNorm(x @ W.T + b + residual)``, the add inside the product."""

    def __init__(self, dense: nn.Linear, layer_norm: nn.LayerNorm) -> None:
        super().__init__()
        self.weight, self.bias = _pack(dense)
        self.LayerNorm = layer_norm

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        summed = torch.ops.mkldnn._linear_pointwise.binary(hidden_states, input_tensor, self.weight, self.bias, "add")
        return self.LayerNorm(summed)


def _exact_gelu(module: object) -> bool:
    """HF's ``GELUActivation`` (erf, in C or Python) or ``nn.GELU()``: the GELU oneDNN fuses."""
    if isinstance(module, nn.GELU):
        return bool(module.approximate == "none")
    return type(module).__name__ == "GELUActivation"


def fuse_cpu_linears(model: nn.Module) -> int:
    """Swap the linear layers of ``model.encoder.layer[*]`` for packed, fused ones; returns how many
    layers were fused (0 if the model does not have the expected shape: then nothing changed)."""
    base = getattr(model, "base_model", model)  # the encoder inside a *ForSequenceClassification too
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not all(_fusable(layer) for layer in layers):
        logger.debug("bf16 CPU fusion skipped: %s's layers are not BERT-shaped", type(model).__name__)
        return 0
    for layer in layers:
        attention = layer.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, PackedLinear(getattr(attention, name)))
        layer.attention.output = PackedOutput(layer.attention.output.dense, layer.attention.output.LayerNorm)
        layer.intermediate.dense = PackedLinear(layer.intermediate.dense, "gelu")
        layer.intermediate.intermediate_act_fn = nn.Identity()
        layer.output = PackedOutput(layer.output.dense, layer.output.LayerNorm)
    return len(layers)


def _fusable(layer: nn.Module) -> bool:
    """A BERT/XLM-R encoder layer: q/k/v linears, ``*Output`` blocks of dense + LayerNorm, an
    intermediate dense followed by exact GELU, no cross-attention."""
    try:
        attention = layer.attention.self
        outputs = (layer.attention.output, layer.output)
        intermediate = layer.intermediate
    except AttributeError:
        return False
    linears = [getattr(attention, n, None) for n in ("query", "key", "value")] + [intermediate.dense]
    linears += [getattr(o, "dense", None) for o in outputs]
    return (
        all(type(x) is nn.Linear for x in linears)
        and all(isinstance(getattr(o, "LayerNorm", None), nn.LayerNorm) for o in outputs)
        and all(type(o).__name__.endswith("Output") for o in outputs)
        and _exact_gelu(getattr(intermediate, "intermediate_act_fn", None))
        and not getattr(layer, "add_cross_attention", False)
    )
