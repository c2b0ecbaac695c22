"""bf16 (and fp16) against fp32 on the same checkpoint: the numbers behind ``dtype="auto"``.

    python benchmarks/fidelity.py [--checkpoint DIR] [--dtypes bfloat16,float16]

Documents: m3rag.testing.SAMPLE_TEXTS (225 multilingual texts); queries: the first 40 characters
of every fifth. Prints the README's fidelity table (see m3rag.testing.fidelity for each measure).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import describe_cpu

from m3rag import M3Encoder
from m3rag.testing import SAMPLE_TEXTS, build_checkpoint
from m3rag.testing.fidelity import compare_encoders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--dtypes", default="bfloat16")
    args = parser.parse_args()
    checkpoint = args.checkpoint or build_checkpoint(Path(tempfile.mkdtemp()) / "wide-m3", preset="wide")
    reference = M3Encoder(checkpoint, device="cpu", dtype="float32")
    docs, queries = list(SAMPLE_TEXTS), [t[:40] for t in SAMPLE_TEXTS[::5]]
    print(f"CPU: {describe_cpu()}")
    print(f"checkpoint {checkpoint}; {len(docs)} documents, {len(queries)} queries; reference fp32\n")
    reports = {d: compare_encoders(reference, M3Encoder(checkpoint, device="cpu", dtype=d), docs, queries) for d in args.dtypes.split(",")}
    print("| measure | " + " | ".join(reports) + " |\n|---|" + "---:|" * len(reports))
    for key in next(iter(reports.values())):
        print(f"| {key} | " + " | ".join(f"{r[key]:.4f}" for r in reports.values()) + " |")  # type: ignore[literal-required]


if __name__ == "__main__":
    main()
