"""Models: the embedded tiny Qwen2, hub downloads, and loading a variant for generation or scoring.

The embedded default needs no hub: ``build_tiny_model`` trains a byte-level BPE tokenizer on
the given texts (digits split one per token, so numbers are spelt digit by digit) and
initialises a small Qwen2-architecture causal LM from the seed. Its chat template is the
ChatML layout of Qwen2 instruct models, so every rule treats it like a real instruct model.

A real model is either a local Hugging Face directory or a hub id, which ``download_model``
fetches with huggingface_hub. Offline, it fails at once and says what to put where.

A *variant* is what the evaluation compares: ``base`` (the model as given), ``sft`` (after the
warm start), ``dpo`` (a PEFT LoRA adapter over the policy it was trained from).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger("juicebox")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ModelUnavailable(RuntimeError):
    """A model named in the config cannot be found locally nor downloaded."""


@dataclass(frozen=True)
class TinySpec:
    """Size of the embedded Qwen2 model (config key ``model_build``)."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 512


def corpus_texts(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Every string value of every record in JSONL/JSON/CSV/Parquet files (the tokenizer corpus)."""
    from .sources import SourceSpec, read_items

    texts: list[str] = []

    def walk(value) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for path in paths:
        for item in read_items(SourceSpec.from_config({"path": str(path)})):
            walk(item.value)
    return texts


def build_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` with ChatML special tokens (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(outdir: str | os.PathLike, texts: list[str], seed: int, spec: TinySpec) -> dict:
    """Write a seeded tiny Qwen2 model and its tokenizer to ``outdir``; return a summary."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(texts, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    save_model(model, tokenizer, outdir)
    n_params = sum(p.numel() for p in model.parameters())
    return {"architecture": "Qwen2ForCausalLM", "parameters": n_params, "vocab_size": len(tokenizer),
            "seed": seed, **spec.__dict__}


def save_model(model, tokenizer, outdir: str | os.PathLike) -> None:
    """Save a model and tokenizer into ``outdir`` atomically (a sibling temp dir renamed over it)."""
    target = Path(outdir)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def download_model(repo_id: str, outdir: str | os.PathLike, revision: str | None = None) -> Path:
    """Fetch a hub model into ``outdir`` with huggingface_hub, or fail at once saying what to do."""
    from huggingface_hub import snapshot_download

    hint = (f"cannot download model {repo_id!r}: {{reason}}. Without internet, put a Hugging Face model "
            f"directory (config.json, tokenizer files, weights) at {outdir} or anywhere else and set "
            f"`model: <that directory>` in the config.")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        raise ModelUnavailable(hint.format(reason="HF_HUB_OFFLINE is set"))
    target = Path(outdir)
    tmp = target.with_name(f".{target.name}.download")
    try:
        snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp, etag_timeout=10)
    except Exception as err:  # huggingface_hub raises many types: connection, 404, auth
        raise ModelUnavailable(hint.format(reason=f"{type(err).__name__}: {err}")) from err
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def is_hub_id(name: str) -> bool:
    """True for ``owner/name`` strings that are not an existing local path."""
    return not Path(name).exists() and name.count("/") == 1 and not name.startswith((".", "/"))


def model_slug(name: str) -> str:
    """The folder name under resources/models/ for a hub id (``Qwen/Qwen2.5-0.5B`` → ``Qwen--Qwen2.5-0.5B``)."""
    return name.replace("/", "--")


def load_tokenizer(path: str | os.PathLike, padding_side: str = "left"):
    """The model's tokenizer with a pad token (left padding for batched generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(path: str | os.PathLike, adapter: str | os.PathLike | None = None, dtype: str = "auto",
                   device: str | None = None):
    """A causal LM in eval mode; with ``adapter``, the PEFT LoRA adapter applied over it."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype if dtype != "auto" else "auto")
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device).eval()


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Write base + LoRA adapter merged into one model directory (for servers without LoRA support)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    save_model(model, load_tokenizer(base), outdir)
    return Path(outdir)


def read_variant(path: str | os.PathLike) -> dict:
    """A variant descriptor written by the workflow: {"variant", "model", "adapter"}."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
