"""Encode a few texts with the shared M3 encoder and score them in every mode.

    python examples/quickstart.py                 # BAAI/bge-m3 (or $M3RAG_MODEL)
    python examples/quickstart.py --demo          # a small random checkpoint built on the spot

The demo checkpoint has random weights: it shows the API and the speed, not retrieval quality.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from m3rag import M3Encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="hub id or local directory (default: $M3RAG_MODEL or BAAI/bge-m3)")
    parser.add_argument("--demo", action="store_true", help="build and use a small random checkpoint (no download)")
    args = parser.parse_args()

    model = args.model
    if args.demo:
        from m3rag.testing import build_checkpoint

        model = str(build_checkpoint(os.path.join(tempfile.mkdtemp(prefix="m3rag-demo-"), "tiny-m3")))
        print(f"demo checkpoint (random weights) built in {model}")

    encoder = M3Encoder.shared(model)
    print(encoder)

    queries = ["What is BGE M3?", "Defination of BM25"]
    passages = [
        "BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector interaction.",
        "BM25 is a bag-of-words retrieval function that ranks a set of documents based on the query terms.",
    ]
    q = encoder.encode_queries(queries, return_sparse=True, return_colbert_vecs=True)
    p = encoder.encode_corpus(passages, return_sparse=True, return_colbert_vecs=True)

    print("dense scores:\n", q.dense @ p.dense.T)
    print("lexical scores:\n", encoder.compute_lexical_matching_score(q.lexical_weights, p.lexical_weights))
    print("colbert score q0-p0:", encoder.colbert_score(q.colbert_vecs[0], p.colbert_vecs[0]))
    print("top tokens of q0:", encoder.convert_id_to_token(q.lexical_weights[0]))
    pairs = [(qq, pp) for qq in queries for pp in passages]
    scores = encoder.compute_score(pairs, weights_for_different_modes=[0.4, 0.2, 0.4])
    for (qq, pp), s in zip(pairs, scores["colbert+sparse+dense"]):
        print(f"{s:+.4f}  {qq!r} -> {pp[:40]!r}")


if __name__ == "__main__":
    main()
