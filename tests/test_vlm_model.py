"""The tiny VLM and the one model loader: built from configs, loaded by kind, generates from images."""

from pathlib import Path

import pytest

from juicebox.images import load_image
from juicebox.models import is_vision_language, load_model, tokenizer_of
from juicebox.records import with_image_parts


@pytest.mark.train
def test_tiny_vlm_loads_as_vision_language_and_sees_the_image(tiny_vlm, shape_images):
    import torch

    assert is_vision_language(tiny_vlm)
    loaded = load_model(tiny_vlm)
    assert loaded.vision and type(loaded.model).__name__ == "LlavaForConditionalGeneration"
    assert tokenizer_of(loaded.processing) is loaded.tokenizer
    messages = with_image_parts([{"role": "user", "content": "What colour is the shape?"}], 1)
    text = loaded.processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\n<image>\nWhat colour is the shape?<|im_end|>")
    logits = []
    for name in ("red_circle", "blue_square"):
        enc = loaded.processing(text=[text], images=[load_image(shape_images[name])], return_tensors="pt")
        with torch.inference_mode():
            logits.append(loaded.model(**enc).logits[0, -1])
        out = loaded.model.generate(**enc, max_new_tokens=3, do_sample=False)
        assert out.shape[1] == enc["input_ids"].shape[1] + 3 or loaded.tokenizer.eos_token_id in out[0].tolist()
    assert not torch.allclose(logits[0], logits[1]), "the next-token logits do not depend on the image"


@pytest.mark.train
def test_text_model_is_not_vision_language(tmp_path):
    from juicebox.models import build_tiny_model
    from juicebox.models import TinySpecOptions

    spec = TinySpecOptions(vocab_size=280, num_hidden_layers=1)
    build_tiny_model(tmp_path / "m", ["1 + 1 = 2"] * 20, seed=0, spec=spec)
    assert not is_vision_language(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert not loaded.vision and loaded.tokenizer is loaded.processing


def test_image_parts_placement():
    assert with_image_parts([{"role": "user", "content": "Q"}], 0) == [{"role": "user", "content": "Q"}]
    assert with_image_parts([{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}], 1) == [
        {"role": "system", "content": [{"type": "text", "text": "S"}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}]
    assert with_image_parts([{"role": "user", "content": "A <image> B"}], 1)[0]["content"] == [
        {"type": "text", "text": "A "}, {"type": "image"}, {"type": "text", "text": " B"}]


@pytest.mark.train
def test_merging_an_adapter_into_a_vlm_keeps_its_kind_and_weights(tiny_vlm, tmp_path, shape_images):
    import torch
    from peft import LoraConfig, get_peft_model

    from juicebox.models import merge_adapter

    torch.manual_seed(0)
    peft = get_peft_model(load_model(tiny_vlm).model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                   target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    peft.save_pretrained(tmp_path / "adapter")
    merge_adapter(tiny_vlm, tmp_path / "adapter", tmp_path / "merged")
    merged = load_model(tmp_path / "merged")
    adapted, loaded = load_model(tiny_vlm, adapter=tmp_path / "adapter"), load_model(tiny_vlm)
    assert merged.vision and (tmp_path / "merged/processor_config.json").is_file()
    messages = with_image_parts([{"role": "user", "content": "Describe the image."}], 1)
    text = merged.processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = merged.processing(text=[text], images=[load_image(shape_images["red_circle"])], return_tensors="pt")
    with torch.inference_mode():
        a, b, base = (m.model(**enc).logits[0, -1] for m in (merged, adapted, loaded))
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, base, atol=1e-4)


@pytest.mark.train
def test_a_saved_vlm_has_the_published_key_layout_and_loads_the_same(tiny_vlm, tmp_path):
    """vLLM's LLaVA loader takes only the published names (``vision_tower.vision_model.*``); the
    model saved under them loads in transformers with every tensor as it was."""
    import torch
    from safetensors import safe_open

    from juicebox.models import published_key_layout, save_model

    names = []
    for shard in Path(tiny_vlm).glob("*.safetensors"):
        with safe_open(shard, "pt") as handle:
            names += list(handle.keys())
    tower = [n for n in names if n.startswith("vision_tower.")]
    assert tower and all(n.startswith("vision_tower.vision_model.") for n in tower)
    assert published_key_layout(tiny_vlm) == 0  # already in that layout: nothing renamed

    loaded = load_model(tiny_vlm)
    save_model(loaded.model, loaded.processing, tmp_path / "again")
    again = load_model(tmp_path / "again").model.state_dict()
    before = loaded.model.state_dict()
    assert sorted(again) == sorted(before) and all(torch.equal(again[k], before[k]) for k in before)
