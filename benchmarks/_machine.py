"""The machine a benchmark ran on: every figure is printed with it (ratios compare within a run)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe_cpu() -> str:
    """``"Intel(R) Xeon(R) Processor, 2 cores, avx2 fma ... amx_int8"`` plus any ISA cap in force
    (``m3rag._cpu.matrix_features``): the matrix units the figures were measured with."""
    from m3rag._cpu import matrix_features

    model = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {matrix_features()}"


AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FAISS_OPT_LEVEL": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
}
"""Caps that make this machine's libraries behave as on an AVX2-only CPU (an emulation: memory,
caches and clocks stay this machine's). They are read when the libraries load: set them in a
child process's environment."""


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM; Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
