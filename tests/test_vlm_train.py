"""SFT and LoRA DPO of the tiny VLM through TRL's processor path: the outputs load and generate from
an image, the default LoRA targets hold only language-model weights, max_length never cuts image
tokens, and pairs.parquet with images goes into the DPO trainer as written."""

import json
import re

import pytest

from juicebox.images import load_image
from juicebox.io import read_json
from juicebox.models import load_model, load_processing
from juicebox.options import DPOOptions, LoraOptions, SFTOptions
from juicebox.pairs import build_pairs, write_pairs
from juicebox.records import vision_chat, with_image_parts
from juicebox.train import dpo_rows, fit_vision_rows, train_dpo, train_sft

pytestmark = pytest.mark.train

# The workflow's default LoRA targets (train.lora.target_modules).
LORA_DEFAULT = LoraOptions().target_modules
TRAIN = {"epochs": 1, "batch_size": 2, "learning_rate": 0.001, "lr_scheduler": "constant", "warmup_ratio": 0.0,
         "max_length": 64, "logging_steps": 1, "save_steps": 50, "gpus": 0, "gradient_checkpointing": False}
SFT = SFTOptions.parse(TRAIN, "sft")
DPO = DPOOptions.parse({**TRAIN, "sft_weight": 1.0, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}, "train")


def captions(shape_images: dict) -> list[dict]:
    """One caption record per shape, and one whose prompt places its image itself."""
    records = [{"id": f"c{k}", "task": "caption", "prompt": "Describe the image.",
                "references": [f"A {name.replace('_', ' ')}."], "images": [path]}
               for k, (name, path) in enumerate(shape_images.items())]
    records.append({"id": "p0", "task": "caption", "prompt": "<image>\nWhat shape is in the picture?",
                    "references": ["A red circle."], "images": [shape_images["red_circle"]]})
    return records


def generates_from_an_image(loaded, image: str) -> bool:
    """Whether the loaded model answers a prompt with an image (new tokens come out)."""
    messages = with_image_parts([{"role": "user", "content": "Describe the image."}], 1)
    text = loaded.processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    encoded = loaded.processing(text=[text], images=[load_image(image)], return_tensors="pt")
    out = loaded.model.generate(**encoded, max_new_tokens=3, min_new_tokens=1, do_sample=False)
    return out.shape[1] > encoded["input_ids"].shape[1]


def test_vlm_sft_writes_a_model_that_generates_from_an_image(tiny_vlm, shape_images, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in captions(shape_images)))
    summary = train_sft(str(data), tiny_vlm, str(tmp_path / "sft"), str(tmp_path / "sft.csv"), SFT, 0)
    assert summary["examples"] == 4 and summary["steps"] == 2
    assert (summary["truncated"], summary["skipped"]) == (0, 0)
    assert (tmp_path / "sft/processor_config.json").is_file() and not (tmp_path / "sft.checkpoints").exists()
    loaded = load_model(tmp_path / "sft")
    assert loaded.vision and generates_from_an_image(loaded, shape_images["blue_square"])
    # the vision tower stays as it was (freeze_vision_tower), the projector and the LM trained
    base = dict(load_model(tiny_vlm).model.named_parameters())
    for name, parameter in loaded.model.named_parameters():
        same = bool((parameter == base[name]).all())
        assert same if ".vision_tower." in name else (not same if "multi_modal_projector.linear_1.weight" in name
                                                     or "layers.0.self_attn.q_proj.weight" in name else True), name


def test_vlm_dpo_on_pairs_with_images_writes_a_language_model_adapter(tiny_vlm, shape_images, tmp_path):
    from safetensors import safe_open

    scored = [{**r, "samples": [{"index": 0, "text": r["references"][0], "reward": 1.0},
                                {"index": 1, "text": "A green square.", "reward": 0.0}]}
              for r in captions(shape_images)]
    result = build_pairs(scored, {"type": "best_vs_worst"}, 0)
    pairs = tmp_path / "pairs.parquet"
    write_pairs(result.rows, pairs, tmp_path / "pairs.jsonl", result.conversational)
    out = tmp_path / "adapter"
    summary = train_dpo(str(pairs), tiny_vlm, str(out), str(tmp_path / "dpo.csv"), DPO, 0)
    assert summary == {"pairs": 4, "truncated": 0, "skipped": 0, "steps": 2, "train_loss": summary["train_loss"]}
    with safe_open(out / "adapter_model.safetensors", "pt") as weights:
        names = list(weights.keys())
    # vLLM serves LoRA on the language model only: no vision-tower or projector tensors by default
    assert names and all(".language_model.layers." in name for name in names), names
    assert read_json(out / "adapter_config.json")["target_modules"] == LORA_DEFAULT
    loaded = load_model(tiny_vlm, adapter=out)
    assert type(loaded.model).__name__.startswith("Peft")
    assert generates_from_an_image(loaded, shape_images["red_circle"])


def test_default_lora_targets_are_the_language_model_projections():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    small = dict(num_hidden_layers=1, depth=1, hidden_size=32, intermediate_size=32, num_attention_heads=2,
                 num_key_value_heads=1, num_heads=2, out_hidden_size=32, embed_dim=32, vocab_size=64, pad_token_id=0)
    models = {"qwen2": AutoModelForCausalLM, "phi3": AutoModelForCausalLM, "llava": AutoModelForImageTextToText,
              "qwen2_vl": AutoModelForImageTextToText, "idefics3": AutoModelForImageTextToText}
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for model_type, auto in models.items():
        config = AutoConfig.for_model(model_type)
        for sub in [config, *(getattr(config, key, None) for key in ("text_config", "vision_config"))]:
            for key, value in small.items():
                if sub is not None and hasattr(sub, key):
                    setattr(sub, key, value)
        with torch.device("meta"):
            model = auto.from_config(config)
        linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
        targeted = {name for name in linear if re.fullmatch(LORA_DEFAULT, name)}
        language = {name for name in linear if name.rsplit(".", 1)[-1] in projections | {"qkv_proj", "gate_up_proj"}
                    and not re.search(r"vision|visual", name)}
        assert targeted == language and targeted, model_type


def test_max_length_shortens_answers_and_skips_prompts_that_leave_no_room(tiny_vlm, shape_images):
    from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

    processor = load_processing(tiny_vlm, padding_side="right")
    image, long_answer = shape_images["red_circle"], "A red circle. " * 5

    def row(n_images, chosen):
        return {"prompt": vision_chat("What colour is the shape?", n_images), "images": [image] * n_images,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": "blue"}]}

    # with its 16 image tokens the prompt is 46 tokens; three images make it 79
    rows = [row(1, "red"), row(1, long_answer), row(3, "red")]
    fitted, counts = fit_vision_rows(rows, processor, 64, ("chosen", "rejected"))
    assert counts == {"truncated": 1, "skipped": 1}
    assert fitted[0] == rows[0] and long_answer.startswith(fitted[1]["chosen"][0]["content"])
    assert fitted[1]["rejected"] == rows[1]["rejected"] and fitted[1]["chosen"][0]["content"] != long_answer
    # What TRL's collator builds from the fitted rows: within max_length, every image with all its tokens
    batch = DataCollatorForVisionPreference(processor=processor)(
        [{**r, "images": [load_image(p) for p in r["images"]]} for r in fitted])
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert max(lengths) == 64  # the shortened answer fills max_length exactly
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert (batch["input_ids"] == image_token).sum(dim=1).tolist() == [16, 16, 16, 16]
    with pytest.raises(ValueError, match="leaves no room for an answer within max_length 40"):
        fit_vision_rows(rows, processor, 40, ("chosen", "rejected"))


def test_a_text_model_trains_on_the_text_of_pairs_with_images(shape_images, tmp_path):
    records = [{"id": "c0", "task": "caption", "prompt": "Describe the image.", "images": [shape_images["red_circle"]],
                "samples": [{"index": 0, "text": "A red circle.", "reward": 1.0},
                            {"index": 1, "text": "A blue square.", "reward": 0.0}]}]
    result = build_pairs(records, {"type": "best_vs_worst"}, 0)
    write_pairs(result.rows, tmp_path / "pairs.parquet", tmp_path / "pairs.jsonl", result.conversational)
    [vision_row] = dpo_rows(str(tmp_path / "pairs.parquet"), vision=True)
    assert vision_row["images"] == [shape_images["red_circle"]]
    assert vision_row["prompt"][0]["content"][0] == {"type": "image", "text": None}
    [text_row] = dpo_rows(str(tmp_path / "pairs.parquet"), vision=False)
    assert text_row == {"prompt": [{"role": "user", "content": "Describe the image."}],
                        "chosen": [{"role": "assistant", "content": "A red circle."}],
                        "rejected": [{"role": "assistant", "content": "A blue square."}]}
