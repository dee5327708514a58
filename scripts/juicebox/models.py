"""Models: the embedded tiny models, hub downloads, and loading a variant for generation or scoring.

The embedded default needs no hub: ``build_tiny_model`` trains a byte-level BPE tokenizer on
the given texts (digits split one per token, so numbers are spelt digit by digit) and
initialises a small Qwen2-architecture causal LM from the seed. Its chat template is the
ChatML layout of Qwen2 instruct models, so every rule treats it like a real instruct model.
``build_tiny_vlm`` puts a small CLIP vision tower and a projector in front of the same kind of
language model: a LLaVA-architecture vision-language model with an ``<image>`` token and a
processor whose chat template renders image and text content parts.

:func:`load_model` is the one loader: it reads the model's config, loads a vision-language model
(anything ``AutoModelForImageTextToText`` knows whose config has a vision tower: LLaVA,
Qwen2/2.5/3-VL, Idefics3/SmolVLM, Gemma 3, ...) with its ``AutoProcessor``, and any other model as
a causal LM with its tokenizer. Nothing else asks which kind a model is.

A real model is either a local Hugging Face directory or a hub id, which ``download_model``
fetches with huggingface_hub. Offline, it fails at once and says what to put where.

A *variant* is what the evaluation compares: ``base`` (the model as given), ``sft`` (after the
warm start), ``dpo`` (a PEFT LoRA adapter over the policy it was trained from).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .sources import SourceSpec, read_items
from .spec import Options, option

log = logging.getLogger("juicebox")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
IMAGE_TOKEN = "<image>"  # the tiny VLM's image token, LLaVA's
# ChatML (Qwen2 instruct's layout). Content is text or a list of parts: text parts are printed,
# image parts (``{"type": "image"}`` or OpenAI's ``image_url``) become the image token and a newline,
# as LLaVA-1.5 writes "<image>\n{question}".
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] in ('image', 'image_url') %}" + IMAGE_TOKEN + "\n"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ModelUnavailable(RuntimeError):
    """A model named in the config cannot be found locally nor downloaded."""


@dataclass(frozen=True)
class VisionTowerOptions(Options):
    """Size of the embedded VLM's CLIP-style vision tower (config key ``model_build.vision``)."""

    image_size: int = option(32, "Image side in pixels.", minimum=8)
    patch_size: int = option(8, "Patch side in pixels.", minimum=2)
    hidden_size: int = option(64, "Hidden size.", minimum=8)
    intermediate_size: int = option(128, "MLP size.", minimum=8)
    num_hidden_layers: int = option(2, "Layers.", minimum=1)
    num_attention_heads: int = option(2, "Attention heads.", minimum=1)


@dataclass(frozen=True)
class TinySpecOptions(Options):
    """Size of the embedded Qwen2 model (config key ``model_build.spec``)."""

    vocab_size: int = option(1024, "Vocabulary of the byte-level BPE tokenizer.", minimum=260)
    hidden_size: int = option(128, "Hidden size.", minimum=8)
    intermediate_size: int = option(256, "MLP size.", minimum=8)
    num_hidden_layers: int = option(4, "Layers.", minimum=1)
    num_attention_heads: int = option(4, "Attention heads.", minimum=1)
    num_key_value_heads: int = option(2, "Key/value heads.", minimum=1)
    max_position_embeddings: int = option(512, "Longest sequence.", minimum=16)


BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=\s]{200,}")


def is_inline_image(text: str) -> bool:
    """Whether a string is an image given inline (a ``data:`` URI or long base64 text), not text."""
    return text.startswith("data:") or bool(BASE64_TEXT.fullmatch(text))


def corpus_texts(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Every string value of every record in JSONL/JSON/CSV/Parquet files (the tokenizer corpus),
    except images given inline."""
    texts: list[str] = []

    def walk(value) -> None:
        if isinstance(value, str):
            if not is_inline_image(value):
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


def build_tokenizer(texts: list[str], vocab_size: int, extra_special: tuple[str, ...] = ()):
    """A byte-level BPE tokenizer trained on ``texts`` with ChatML special tokens (deterministic);
    ``extra_special`` adds more special tokens (the VLM's image token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + list(extra_special),
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        extra_special_tokens=list(extra_special) or None)
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _qwen2_config(tokenizer, spec: TinySpecOptions):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )


def _generation_config(tokenizer):
    from transformers import GenerationConfig

    return GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_tiny_model(outdir: str | os.PathLike, texts: list[str], seed: int, spec: TinySpecOptions) -> dict:
    """Write a seeded tiny Qwen2 model and its tokenizer to ``outdir``; return a summary."""
    import torch
    from transformers import Qwen2ForCausalLM

    tokenizer = build_tokenizer(texts, spec.vocab_size)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_qwen2_config(tokenizer, spec))
    model.generation_config = _generation_config(tokenizer)
    save_model(model, tokenizer, outdir)
    n_params = sum(p.numel() for p in model.parameters())
    return {"architecture": "Qwen2ForCausalLM", "parameters": n_params, "vocab_size": len(tokenizer),
            "seed": seed, **spec.to_dict()}


def build_tiny_vlm(outdir: str | os.PathLike, texts: list[str], seed: int, spec: TinySpecOptions,
                   vision: VisionTowerOptions) -> dict:
    """Write a seeded tiny LLaVA-architecture VLM and its processor to ``outdir``; return a summary.

    CLIP vision tower (``vision``) → two-layer GELU projector → tiny Qwen2 LM (``spec``). Each
    image becomes (image_size / patch_size)² image tokens (the patch features, CLS dropped, as
    LLaVA-1.5's ``default`` strategy); the processor resizes and centre-crops to ``image_size``.
    """
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)

    tokenizer = build_tokenizer(texts, spec.vocab_size, extra_special=(IMAGE_TOKEN,))
    vision_config = CLIPVisionConfig(
        image_size=vision.image_size, patch_size=vision.patch_size, hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size, num_hidden_layers=vision.num_hidden_layers,
        num_attention_heads=vision.num_attention_heads, projection_dim=vision.hidden_size)
    config = LlavaConfig(vision_config=vision_config, text_config=_qwen2_config(tokenizer, spec),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         vision_feature_layer=-1, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    # The projector's layers start with weights of std fan_in^-1/2 (not the 0.02 of the rest), so an
    # image's tokens reach the language model at the scale of its features: at 0.02 they arrive
    # about 50 times weaker than the text embeddings, and the warm start learns to ignore them
    # (measured: a blank image then changed the SFT model's next-token log-probs by 1e-4).
    for layer in (model.model.multi_modal_projector.linear_1, model.model.multi_modal_projector.linear_2):
        torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
        torch.nn.init.zeros_(layer.bias)
    model.generation_config = _generation_config(tokenizer)
    size = {"shortest_edge": vision.image_size}
    crop = {"height": vision.image_size, "width": vision.image_size}
    image_processor = CLIPImageProcessor(size=size, crop_size=crop, do_center_crop=True, do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=vision.patch_size,
                               vision_feature_select_strategy="default", chat_template=CHATML_TEMPLATE,
                               image_token=IMAGE_TOKEN, num_additional_image_tokens=1)
    save_model(model, processor, outdir)
    n_params = sum(p.numel() for p in model.parameters())
    return {"architecture": "LlavaForConditionalGeneration", "parameters": n_params, "vocab_size": len(tokenizer),
            "seed": seed, "image_tokens": (vision.image_size // vision.patch_size) ** 2, **spec.to_dict(),
            "vision": vision.to_dict()}


def save_model(model, processing, outdir: str | os.PathLike) -> None:
    """Save a model and its tokenizer or processor into ``outdir`` atomically (a sibling temp dir
    renamed over it), a LLaVA's weights under the published names (:func:`published_key_layout`)."""
    target = Path(outdir)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processing.save_pretrained(tmp)
    published_key_layout(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


# transformers 5 saves a LLaVA's vision tower (CLIP, SigLIP) as ``vision_tower.<...>``; the published
# llava-hf checkpoints name it ``vision_tower.vision_model.<...>``, and vLLM 0.32's loader accepts
# only that ("There is no module or parameter named 'vision_tower.embeddings'"). transformers loads both.
UNPUBLISHED_TOWER = re.compile(r"^vision_tower\.(?!vision_model\.)")


def published_key_layout(folder: str | os.PathLike) -> int:
    """Rename a saved LLaVA's vision-tower weights to the published layout, in place; the number of
    tensors renamed (0 for any other model, or one already in that layout)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    if json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type") != "llava":
        return 0
    renamed = 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(shard)
        names = {name: UNPUBLISHED_TOWER.sub("vision_tower.vision_model.", name) for name in tensors}
        if any(old != new for old, new in names.items()):
            save_file({names[name]: tensor for name, tensor in tensors.items()}, shard, metadata=metadata)
            renamed += sum(old != new for old, new in names.items())
    index = folder / "model.safetensors.index.json"
    if renamed and index.exists():
        content = json.loads(index.read_text(encoding="utf-8"))
        content["weight_map"] = {UNPUBLISHED_TOWER.sub("vision_tower.vision_model.", name): shard
                                 for name, shard in content["weight_map"].items()}
        index.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return renamed


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


def is_vision_language(path: str | os.PathLike) -> bool:
    """Whether the model at ``path`` is a vision-language model, from its config alone: its type is
    in transformers' image-text-to-text mapping and it has a vision tower (Gemma 3's text-only
    checkpoints share the mapping but have no ``vision_config``)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    config = AutoConfig.from_pretrained(path)
    return (config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
            and getattr(config, "vision_config", None) is not None)


def tokenizer_of(processing):
    """The tokenizer of a processing class: a processor's ``tokenizer``, or the tokenizer itself."""
    return getattr(processing, "tokenizer", processing)


def load_processing(path: str | os.PathLike, padding_side: str = "left", vision: bool | None = None):
    """The model's processing class: its ``AutoProcessor`` for a vision-language model, else its
    tokenizer; a pad token is set (the EOS token when the model has none) and the padding side
    (left for batched generation, right for training and scoring)."""
    from transformers import AutoProcessor, AutoTokenizer

    vision = is_vision_language(path) if vision is None else vision
    processing = AutoProcessor.from_pretrained(path) if vision else AutoTokenizer.from_pretrained(path)
    tokenizer = tokenizer_of(processing)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return processing


def load_tokenizer(path: str | os.PathLike, padding_side: str = "left"):
    """The model's tokenizer (a VLM's is its processor's) with a pad token and the padding side."""
    return tokenizer_of(load_processing(path, padding_side))


@dataclass
class Loaded:
    """A model as :func:`load_model` returns it: the model, its processing class, and its kind."""

    model: object
    processing: object
    vision: bool

    @property
    def tokenizer(self):
        return tokenizer_of(self.processing)


def model_class(vision: bool):
    """The Auto class a model of this kind loads with."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    return AutoModelForImageTextToText if vision else AutoModelForCausalLM


def load_model(path: str | os.PathLike, adapter: str | os.PathLike | None = None, dtype: str = "auto",
               device: str | None = None, padding_side: str = "left") -> Loaded:
    """The model at ``path`` in eval mode with its processing class; with ``adapter``, the PEFT LoRA
    adapter applied over it. A vision-language model loads with ``AutoModelForImageTextToText``
    and ``AutoProcessor``, any other with ``AutoModelForCausalLM`` and its tokenizer."""
    import torch

    vision = is_vision_language(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model_class(vision).from_pretrained(path, dtype=dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    processing = load_processing(path, padding_side, vision=vision)
    return Loaded(model.to(device).eval(), processing, vision)


def merge_adapter(base: str | os.PathLike, adapter: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """Write base + LoRA adapter merged into one model directory (for servers without LoRA support),
    with the base's tokenizer or processor."""
    from peft import PeftModel

    vision = is_vision_language(base)
    model = PeftModel.from_pretrained(model_class(vision).from_pretrained(base), adapter).merge_and_unload()
    save_model(model, load_processing(base, vision=vision), outdir)
    return Path(outdir)


POLICY_PROVENANCE = "juicebox_policy.json"


def merge_policy(base: str | os.PathLike, adapter: str | os.PathLike, outdir: str | os.PathLike,
                 round_number: int) -> dict:
    """DPO round ``round_number``'s policy: ``base`` (the previous round's policy) with the previous
    round's ``adapter`` merged in, written to ``outdir`` with its provenance (``POLICY_PROVENANCE``:
    the round, both paths, and the SHA-256 of the adapter's weights). Returns the provenance."""
    import hashlib

    weights = Path(adapter) / "adapter_model.safetensors"
    provenance = {"round": round_number, "base": str(base), "adapter": str(adapter),
                  "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    merge_adapter(base, adapter, outdir)
    with open(Path(outdir) / POLICY_PROVENANCE, "w", encoding="utf-8") as handle:
        json.dump(provenance, handle, indent=2, sort_keys=True)
    return provenance


def read_variant(path: str | os.PathLike) -> dict:
    """A variant descriptor written by the workflow: {"variant", "model", "adapter"}."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
