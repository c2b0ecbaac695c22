from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from m3rag import CheckpointError, CheckpointNotFoundError, M3Encoder
from m3rag.encoder.checkpoint import resolve_checkpoint_dir


@pytest.fixture
def copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "copy"))


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        raise AssertionError("the hub must not be contacted")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    return calls


@pytest.mark.parametrize("name", ["./missing-model", "/no/such/dir", "~/nope/model", "a/b/c", "typo-model", "C:\\models\\m3"])
def test_missing_local_looking_path_is_an_error_not_a_hub_request(name: str, no_hub: list[Any]) -> None:
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        resolve_checkpoint_dir(name)
    assert no_hub == []


def test_pathlike_is_never_a_hub_id(no_hub: list[Any]) -> None:
    with pytest.raises(CheckpointNotFoundError):
        resolve_checkpoint_dir(Path("BAAI/bge-m3"))
    assert no_hub == []


def test_hub_id_goes_through_the_hub_cache(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def fake_snapshot(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(tiny_checkpoint)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    enc = M3Encoder("BAAI/bge-m3", device="cpu", revision="abc", local_files_only=True)
    assert enc.path == tiny_checkpoint and enc.name == "BAAI/bge-m3"
    assert calls[0]["repo_id"] == "BAAI/bge-m3" and calls[0]["revision"] == "abc" and calls[0]["local_files_only"]
    patterns = calls[0]["allow_patterns"]
    assert "colbert_linear.pt" in patterns and "sparse_linear.pt" in patterns
    assert not any(p.startswith("pytorch_model") for p in patterns)  # safetensors first, never both


def test_hub_failure_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs: Any) -> str:
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointNotFoundError, match="'BAAI/bge-m3' is not in the local Hugging Face cache"):
        M3Encoder("BAAI/bge-m3", device="cpu")


def test_default_model_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    monkeypatch.setenv("M3RAG_MODEL", str(tiny_checkpoint))
    assert M3Encoder(device="cpu").path == tiny_checkpoint


@pytest.mark.parametrize("head", ["colbert_linear.pt", "sparse_linear.pt"])
def test_missing_head_names_the_file(copy: Path, head: str) -> None:
    (copy / head).unlink()
    with pytest.raises(CheckpointError, match=f"{head}.*dense_only=True") as info:
        M3Encoder(copy, device="cpu")
    assert info.value.path == copy / head
    assert M3Encoder(copy, device="cpu", dense_only=True).dense_only


@pytest.mark.parametrize(
    ("head", "state", "message"),
    [
        ("sparse_linear.pt", {"weight": torch.zeros(2, 64), "bias": torch.zeros(2)}, r"expected weight \[1, 64\]"),
        ("colbert_linear.pt", {"weight": torch.zeros(64, 32), "bias": torch.zeros(64)}, r"weight \[64, 32\]"),
        ("colbert_linear.pt", {"weight": torch.zeros(64, 64)}, "exactly 'weight' and 'bias'"),
        ("sparse_linear.pt", [1, 2, 3], "exactly 'weight' and 'bias'"),
    ],
)
def test_misshaped_head_names_the_file(copy: Path, head: str, state: Any, message: str) -> None:
    torch.save(state, copy / head)
    with pytest.raises(CheckpointError, match=message) as info:
        M3Encoder(copy, device="cpu")
    assert info.value.path == copy / head and head in str(info.value)


def test_truncated_head_names_the_file(copy: Path) -> None:
    data = (copy / "colbert_linear.pt").read_bytes()
    (copy / "colbert_linear.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"colbert_linear\.pt is unreadable or corrupt"):
        M3Encoder(copy, device="cpu")


class _Exploit:
    def __reduce__(self) -> Any:
        return (os.system, ("echo pwned > /dev/null",))


def test_head_with_code_is_refused(copy: Path) -> None:
    with open(copy / "sparse_linear.pt", "wb") as f:
        pickle.dump({"weight": _Exploit(), "bias": 0}, f)
    with pytest.raises(CheckpointError, match=r"sparse_linear\.pt"):
        M3Encoder(copy, device="cpu")


def test_safetensors_heads_are_preferred(copy: Path, encoder: M3Encoder) -> None:
    from safetensors.torch import save_file

    for stem in ("colbert_linear", "sparse_linear"):
        state = torch.load(copy / f"{stem}.pt", weights_only=True)
        save_file({k: v * 2 for k, v in state.items()}, str(copy / f"{stem}.safetensors"))
        (copy / f"{stem}.pt").unlink()
    enc = M3Encoder(copy, device="cpu")
    torch.testing.assert_close(enc.sparse_linear.weight, encoder.sparse_linear.weight * 2)


@pytest.mark.parametrize("victim", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_or_corrupt_checkpoint_files_name_the_problem(copy: Path, victim: str) -> None:
    if victim == "model.safetensors":
        (copy / victim).write_bytes(b"\x00" * 100)
        match = "encoder weights"
    elif victim == "config.json":
        (copy / victim).unlink()
        match = "config.json"
    else:
        for f in ("tokenizer.json", "sentencepiece.bpe.model"):
            (copy / f).unlink()
        match = "tokenizer"
    with pytest.raises(CheckpointError, match=match):
        M3Encoder(copy, device="cpu")


def test_file_instead_of_directory(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointNotFoundError, match="is a file"):
        M3Encoder(path)


def test_a_config_that_does_not_fit_its_weights_fails_before_building(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from m3rag.encoder import checkpoint

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built")

    monkeypatch.setattr(checkpoint, "load_model", never)
    for field, value, message in [
        ("num_hidden_layers", 100_000, "num_hidden_layers=100000 is beyond any supported model"),
        ("num_hidden_layers", 3, "num_hidden_layers=3, but the weights (model.safetensors) have 2"),
        ("hidden_size", 128, "hidden_size=128, but the weights"),
        ("vocab_size", 99, "vocab_size=99, but the weights"),
        ("intermediate_size", "big", "intermediate_size must be a positive integer"),
    ]:
        copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / f"{field}-{value}"))
        config = json.loads((copy / "config.json").read_text())
        config[field] = value
        (copy / "config.json").write_text(json.dumps(config))
        with pytest.raises(CheckpointError, match=re.escape(message)) as info:
            M3Encoder(copy, device="cpu")
        assert info.value.path == copy / "config.json"


def test_non_finite_head_weights_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_checkpoint, tmp_path / "nan-head"))
    state = torch.load(copy / "sparse_linear.pt", weights_only=True)
    state["weight"][0, 3] = float("nan")
    torch.save(state, copy / "sparse_linear.pt")
    with pytest.raises(CheckpointError, match=r"sparse_linear\.pt holds NaN or infinite values"):
        M3Encoder(copy, device="cpu")
