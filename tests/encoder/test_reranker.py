"""BGEReranker: the cross-encoder, equal to FlagEmbedding's FlagReranker (fp32, live).

FlagReranker 1.4.2 under transformers 5 decodes the cut query/passage ids back to text and
tokenizes the pair again; that changes the ids of pairs with an ``<unk>`` inside a word (XLM-R), and
then its scores differ from the id-level truncation m3rag computes (FlagReranker's transformers-4
behaviour, and 1.2.11's on every pair that fits). Parity is checked on the pairs the round trip
leaves alone; the others are shown to differ by their ids alone, and to equal 1.2.11.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from m3rag import BGEReranker, InputTypeError, InputValueError, ModelKindError
from m3rag.encoder import TruncationWarning
from m3rag.encoder.reranker import sigmoid
from m3rag.testing import SAMPLE_TEXTS
from tests.reference import reference

ATOL = 1e-5
T = list(SAMPLE_TEXTS)
LONG = [" ".join(T[i : i + 40]) for i in range(0, 225, 45)]
EDGE = ["", "   ", "Héllo  WÖRLD!!", "naïve café", "[UNK] and [SEP] as text", "<s> and </s> as text", "tab\there"]
PAIRS = [(T[i], T[j]) for i in range(0, 225, 11) for j in range(5, 225, 23)]
PAIRS += [(T[i], LONG[i % 5]) for i in range(0, 225, 25)]  # passages over max_length: cut
PAIRS += [(LONG[k], T[k]) for k in range(5)]  # queries over 3/4 of max_length: cut first
PAIRS += [(a, b) for a in EDGE[:5] for b in EDGE[2:7]]
CHECKPOINTS = ["reranker_checkpoint", "bert_reranker_checkpoint"]

pytestmark = pytest.mark.filterwarnings("ignore::m3rag.encoder.TruncationWarning")


@pytest.fixture(scope="module", params=CHECKPOINTS)
def pair(request: pytest.FixtureRequest) -> tuple[BGEReranker, Any]:
    """m3rag's reranker and FlagReranker 1.4.2 on the same checkpoint."""
    path: Path = request.getfixturevalue(request.param)
    FlagReranker = reference("FlagEmbedding", "FlagReranker")
    return BGEReranker(path, device="cpu"), FlagReranker(str(path), devices="cpu")


def _flag_ids(flag: Any, pairs: list[tuple[str, str]], max_length: int) -> list[list[int]]:
    """The ids FlagReranker 1.4.2 feeds its model (its own tokenization steps, on this transformers)."""
    prepare = reference("FlagEmbedding.utils.tokenizer_compat", "prepare_for_model_compat")
    tok, query_max_length = flag.tokenizer, max_length * 3 // 4
    out = []
    for query, passage in pairs:
        q = tok(query, add_special_tokens=False, max_length=query_max_length, truncation=True)["input_ids"]
        p = tok(passage, add_special_tokens=False, max_length=max_length, truncation=True)["input_ids"]
        out.append(list(prepare(tok, q, p, truncation="only_second", max_length=max_length, padding=False)["input_ids"]))
    return out


def _split(ours: BGEReranker, flag: Any, max_length: int) -> tuple[list[int], list[int]]:
    """Indices of PAIRS whose ids agree with FlagReranker's, and of those the round trip changed."""
    mine, _, _ = ours.pair_ids(PAIRS, max_length, max_length * 3 // 4)
    theirs = _flag_ids(flag, PAIRS, max_length)
    same = [i for i in range(len(PAIRS)) if mine[i] == theirs[i]]
    return same, [i for i in range(len(PAIRS)) if mine[i] != theirs[i]]


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
@pytest.mark.parametrize("max_length", [512, 40])
def test_equals_flagreranker_where_the_round_trip_changes_nothing(pair: tuple[BGEReranker, Any], max_length: int) -> None:
    ours, flag = pair
    same, _ = _split(ours, flag, max_length)
    assert len(same) >= len(PAIRS) - 16
    pairs = [PAIRS[i] for i in same]
    for normalize in (False, True):
        got = ours.compute_score(pairs, max_length=max_length, normalize=normalize)
        expected = flag.compute_score(pairs, max_length=max_length, normalize=normalize, batch_size=32)
        assert isinstance(got, list) and all(type(s) is float for s in got)
        np.testing.assert_allclose(got, expected, atol=ATOL)
    np.testing.assert_allclose(ours.compute_score(pairs[:60], batch_size=5), flag.compute_score(pairs[:60], batch_size=5), atol=ATOL)
    one, flag_one = ours.compute_score(("what is it", "a thing")), flag.compute_score(("what is it", "a thing"))
    assert len(one) == len(flag_one) == 1  # a list, also for one pair
    np.testing.assert_allclose(one, flag_one, atol=ATOL)


@pytest.mark.parity
def test_equals_flagreranker_with_instructions(pair: tuple[BGEReranker, Any]) -> None:
    ours, _ = pair
    kwargs: dict[str, Any] = dict(query_instruction_for_rerank="query: ", passage_instruction_for_rerank="passage: ")  # no <unk> in them
    ours_i = BGEReranker(ours.path, device="cpu", **kwargs)
    flag_i = reference("FlagEmbedding", "FlagReranker")(str(ours.path), devices="cpu", **kwargs)
    np.testing.assert_allclose(ours_i.compute_score(PAIRS[:50]), flag_i.compute_score(PAIRS[:50]), atol=ATOL)


@pytest.mark.parity
def test_round_trip_pairs_differ_by_their_ids_alone(reranker_checkpoint: Path, flagembedding_1_2_11: ModuleType) -> None:
    """Under transformers 5, FlagReranker 1.4.2 re-tokenizes decoded text: ``naïve`` is
    ``▁n a <unk> ve`` and comes back as ``▁n a <unk> ▁ ve``. m3rag keeps the ids (transformers 4's
    ``prepare_for_model``), which is what FlagReranker 1.2.11 scores too."""
    FlagReranker = reference("FlagEmbedding", "FlagReranker")
    ours, flag = BGEReranker(reranker_checkpoint, device="cpu"), FlagReranker(str(reranker_checkpoint), devices="cpu")
    _, changed = _split(ours, flag, 512)
    assert changed, "no pair with an <unk> inside a word: the test lost its subject"
    pairs = [PAIRS[i] for i in changed]
    assert all("<unk>" in ours.tokenizer.convert_ids_to_tokens(ids) for ids in ours.pair_ids(pairs, 512, 384)[0])
    got, theirs = np.array(ours.compute_score(pairs)), np.array(flag.compute_score(pairs))
    assert float(np.abs(got - theirs).max()) > 1e-3  # the difference shows
    with torch.inference_mode():  # ... and is the ids' alone: our model on FlagReranker's ids gives its scores
        on_their_ids = [float(ours._forward([ids])[0].logits.view(-1)[0]) for ids in _flag_ids(flag, pairs, 512)]
    np.testing.assert_allclose(on_their_ids, theirs, atol=ATOL)
    legacy = flagembedding_1_2_11.FlagReranker(str(reranker_checkpoint), device="cpu")
    np.testing.assert_allclose(got, legacy.compute_score([list(p) for p in pairs]), atol=ATOL)


@pytest.mark.parity
@pytest.mark.parametrize("which", CHECKPOINTS)
def test_equals_flagreranker_1_2_11_on_pairs_that_fit(which: str, request: pytest.FixtureRequest, flagembedding_1_2_11: ModuleType) -> None:
    path: Path = request.getfixturevalue(which)
    ours = BGEReranker(path, device="cpu")
    legacy = flagembedding_1_2_11.FlagReranker(str(path), device="cpu")
    fits = [p for p in PAIRS if len(ours.pair_ids([p], 100_000, 100_000)[0][0]) <= 512]
    assert len(fits) > 200
    np.testing.assert_allclose(ours.compute_score(fits), legacy.compute_score([list(p) for p in fits], batch_size=32), atol=ATOL)


# --------------------------------------------------------------------------------------- behaviour
def test_pair_truncation(reranker_checkpoint: Path) -> None:
    ours = BGEReranker(reranker_checkpoint, device="cpu")
    tok = ours.tokenizer
    long_q, long_p = tok(LONG[0], add_special_tokens=False)["input_ids"], tok(LONG[1], add_special_tokens=False)["input_ids"]
    (ids,), _, cut = ours.pair_ids([(LONG[0], LONG[1])], 64, 48)
    assert cut.tolist() == [True] and len(ids) == 64
    assert ids == [0, *long_q[:48], 2, 2, *long_p[: 64 - 48 - 4], 2]  # <s> q </s></s> p </s>: the query keeps its 48
    (short,), _, cut = ours.pair_ids([("a question", "a passage")], 64, 48)
    assert cut.tolist() == [False] and short == tok("a question", "a passage")["input_ids"]
    with pytest.warns(TruncationWarning, match="1 of 2 pairs"):
        ours.compute_score([(LONG[0], LONG[1]), ("q", "p")], max_length=64)


def test_bert_pairs_carry_segment_types(bert_reranker_checkpoint: Path) -> None:
    ours = BGEReranker(bert_reranker_checkpoint, device="cpu")
    (ids,), (types,), _ = ours.pair_ids([("a question", "a passage here")], 512, 384)  # type: ignore[misc]
    expected = ours.tokenizer("a question", "a passage here")
    assert ids == expected["input_ids"] and types == expected["token_type_ids"] and 1 in types


def test_scores_normalize_empty_and_async(reranker_checkpoint: Path) -> None:
    ours = BGEReranker(reranker_checkpoint, device="cpu")
    raw = ours.compute_score(PAIRS[:20])
    np.testing.assert_allclose(ours.compute_score(PAIRS[:20], normalize=True), sigmoid(np.array(raw)), rtol=1e-12)
    normalized = BGEReranker(reranker_checkpoint, normalize=True, device="cpu")
    assert normalized.compute_score(PAIRS[:3]) == pytest.approx(sigmoid(np.array(raw[:3])).tolist())
    assert ours.compute_score([]) == []
    np.testing.assert_allclose(ours.compute_score([list(PAIRS[0])]), raw[:1], atol=1e-6)  # pairs as lists, as FlagReranker takes them
    np.testing.assert_allclose(asyncio.run(ours.acompute_score(PAIRS[:20])), raw, atol=1e-6)
    ours.enable_coalescing(window_ms=5, max_texts=32)
    try:

        async def many() -> list[list[float]]:
            return list(await asyncio.gather(*(ours.acompute_score(PAIRS[i : i + 4]) for i in range(0, 20, 4))))

        np.testing.assert_allclose(np.concatenate(asyncio.run(many())), raw, atol=1e-6)
    finally:
        ours.disable_coalescing()


def test_shared_and_default(reranker_checkpoint: Path, load_counter: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    a = BGEReranker.shared(reranker_checkpoint, device="cpu")
    assert BGEReranker.shared(str(reranker_checkpoint)) is a and len(load_counter) == 1
    monkeypatch.delenv("M3RAG_RERANKER_MODEL", raising=False)
    assert BGEReranker.default_model() == "BAAI/bge-reranker-v2-m3"
    monkeypatch.setenv("M3RAG_RERANKER_MODEL", str(reranker_checkpoint))
    assert BGEReranker.shared() is a


# ------------------------------------------------------------------------------------------ errors
def test_pairs_that_are_not_pairs(reranker_checkpoint: Path) -> None:
    ours = BGEReranker(reranker_checkpoint, device="cpu")
    for bad, where in (
        ([("q", "p"), ("only one",)], r"sentence_pairs\[1\] must be a \(query, passage\) pair"),
        ([("q", "p", "x")], r"sentence_pairs\[0\]"),
        ([("q", 3)], r"sentence_pairs\[0\] holds int"),
        (["q", "p", "r"], r"sentence_pairs\[0\]"),
        ("q", "sentence_pairs must be"),
        (None, "sentence_pairs must be"),
    ):
        with pytest.raises(InputTypeError, match=where):
            ours.compute_score(bad)  # type: ignore[arg-type]


def test_wrong_checkpoint_kinds(tiny_checkpoint: Path, bert_checkpoint: Path, reranker_checkpoint: Path, tmp_path: Path) -> None:
    for embedder in (tiny_checkpoint, bert_checkpoint):
        with pytest.raises(ModelKindError, match="not a cross-encoder"):
            BGEReranker(embedder, device="cpu")
    two = tmp_path / "two-labels"
    shutil.copytree(reranker_checkpoint, two)
    config = json.loads((two / "config.json").read_text(encoding="utf-8"))
    config["id2label"], config["label2id"] = {"0": "NO", "1": "YES"}, {"NO": 0, "YES": 1}
    (two / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelKindError, match="2 labels"):
        BGEReranker(two, device="cpu")


def test_bad_lengths(reranker_checkpoint: Path, bert_reranker_checkpoint: Path) -> None:
    ours = BGEReranker(reranker_checkpoint, device="cpu")
    with pytest.raises(InputValueError, match="leave no room for the passage"):
        ours.compute_score([(LONG[0], "p")], max_length=20, query_max_length=16)
    with pytest.raises(InputValueError, match="exceeds the model's limit of 512"):
        BGEReranker(bert_reranker_checkpoint, device="cpu").compute_score([("q", "p")], max_length=1024)
    with pytest.raises(InputValueError):
        ours.compute_score([("q", "p")], query_max_length=0)
    with pytest.raises(InputTypeError):
        ours.compute_score([("q", "p")], normalize="yes")  # type: ignore[arg-type]
