"""The embedded tiny model (seeded, no download) and the hub download's offline failure."""

import hashlib

import pytest

from conftest import TINY_SPEC
from juicebox.models import ModelUnavailable, build_tiny_model, download_model, is_hub_id, model_slug

TEXTS = [f"What is {a} times {b}? {a * b}" for a in range(2, 13) for b in range(2, 13)]


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.train
def test_tiny_model_is_a_seeded_qwen2_with_a_chat_template(tmp_path):
    summary = build_tiny_model(tmp_path / "a", TEXTS, seed=1, spec=TINY_SPEC)
    build_tiny_model(tmp_path / "b", TEXTS, seed=1, spec=TINY_SPEC)
    build_tiny_model(tmp_path / "c", TEXTS, seed=2, spec=TINY_SPEC)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["model.safetensors"] != digest(tmp_path / "c")["model.safetensors"]
    assert summary["architecture"] == "Qwen2ForCausalLM" and summary["parameters"] > 0

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert tokenizer.tokenize("123") == ["1", "2", "3"]  # digits one per token
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "qwen2" and model.config.eos_token_id == tokenizer.eos_token_id


def test_hub_ids_and_their_folders(tmp_path):
    assert is_hub_id("Qwen/Qwen2.5-0.5B-Instruct")
    assert model_slug("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen--Qwen2.5-0.5B-Instruct"
    assert not is_hub_id(str(tmp_path)) and not is_hub_id("./models/x") and not is_hub_id("tiny")


def test_download_offline_fails_at_once_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = tmp_path / "Qwen--Qwen2.5-0.5B"
    with pytest.raises(ModelUnavailable,
                       match=r"HF_HUB_OFFLINE.*put a Hugging Face model directory.*Qwen--Qwen2.5-0.5B"):
        download_model("Qwen/Qwen2.5-0.5B", target)
    assert not target.exists()
