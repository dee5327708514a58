"""Rewards on image records: dpo_implicit shows the images to a tiny VLM (checked against direct
forward passes), reward_model refuses images it cannot see, the judge sends them as data URLs."""

import base64
import json
from pathlib import Path

import pytest
import torch
from aiohttp import web
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForImageTextToText, AutoProcessor

from conftest import ROOT, serve_chat_completions
from juicebox.images import load_image
from juicebox.rewards import make_reward

QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module")
def vlm_lora(tiny_vlm, tmp_path_factory):
    """A LoRA adapter on the tiny VLM's language model (q_proj, v_proj) with random non-zero B, so
    base + adapter scores differently from the base."""
    lora = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                      target_modules=r".*language_model.*\.(q_proj|v_proj)")
    torch.manual_seed(5)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_vlm), lora)
    assert model.targeted_module_names and all("language_model" in n for n in model.targeted_module_names)
    path = tmp_path_factory.mktemp("vlm_lora") / "adapter"
    model.save_pretrained(path)
    return str(path)


def record(pid, texts, images, prompt=QUESTION):
    return {"id": pid, "task": "caption", "prompt": prompt, "images": list(images),
            "samples": [{"index": i, "text": t, "finish_reason": f} for i, (t, f) in enumerate(texts)]}


def direct_logprobs(model, processor, question, answer, image=None, end_of_turn=True):
    """Log-probs of the answer tokens (+ <|im_end|>) from one unpadded forward pass: the prompt as
    written out here in the tiny VLM's ChatML (its image through the processor), then the answer."""
    tokenizer = processor.tokenizer
    if image is None:
        prompt, extra = tokenizer(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
                                  return_tensors="pt")["input_ids"], {}
    else:
        rendered = f"<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n"
        enc = processor(text=[rendered], images=[load_image(image)], return_tensors="pt")
        prompt, extra = enc["input_ids"], {"pixel_values": enc["pixel_values"]}
        assert prompt.shape[1] == len(tokenizer(rendered)["input_ids"]) + 15  # "<image>" became 16 tokens
    end = [tokenizer.convert_tokens_to_ids("<|im_end|>")] if end_of_turn else []
    answer_ids = tokenizer(answer)["input_ids"] + end
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt, torch.tensor([answer_ids])], 1), **extra).logits[0]
    p = prompt.shape[1]
    return [torch.log_softmax(logits[p + k - 1], -1)[t].item() for k, t in enumerate(answer_ids)]


@pytest.mark.train
def test_dpo_implicit_scores_answers_with_their_images(tiny_vlm, vlm_lora, shape_images):
    red, blue = shape_images["red_circle"], shape_images["blue_square"]
    records = [record("r", [("A red circle.", "stop"), ("A blue square.", "length")], [red]),
               record("b", [("A red circle.", "stop")], [blue]),
               record("s", [("circle", "stop")], [red], prompt="What shape is in the picture?"),
               record("t", [("red", "stop")], [])]  # no image: token ids only, as for a text model
    # The four image answers form one right-padded batch (prompts and answers of unequal length).
    reward = make_reward({"type": "dpo_implicit", "reward_model": tiny_vlm, "adapter": vlm_lora,
                          "ref_model": tiny_vlm, "beta": 0.5, "batch_size": 4})
    scores = reward.score(records)

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    policy = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_vlm), vlm_lora).eval()
    ref = AutoModelForImageTextToText.from_pretrained(tiny_vlm).eval()
    for rec, row in zip(records, scores):
        image = rec["images"][0] if rec["images"] else None
        for sample, (value, details) in zip(rec["samples"], row):
            stopped = sample["finish_reason"] == "stop"
            question = rec["prompt"]
            lp_policy = direct_logprobs(policy, processor, question, sample["text"], image, stopped)
            lp_ref = direct_logprobs(ref, processor, question, sample["text"], image, stopped)
            assert details["n_tokens"] == len(lp_policy)
            assert details["logp_reward"] == pytest.approx(sum(lp_policy), abs=1e-4)
            assert details["logp_ref"] == pytest.approx(sum(lp_ref), abs=1e-4)
            assert value == details["sum"] == pytest.approx(0.5 * (sum(lp_policy) - sum(lp_ref)), abs=1e-4)
            assert abs(value) > 1e-3
    # The same answer to the same question about another image gets another reward.
    (on_red, red_details), (on_blue, blue_details) = scores[0][0], scores[1][0]
    assert abs(on_red - on_blue) > 1e-4 and abs(red_details["logp_ref"] - blue_details["logp_ref"]) > 1e-4


@pytest.mark.train
def test_dpo_implicit_refuses_images_for_a_text_only_model(tiny_vlm, shape_images, tmp_path):
    text_model = tmp_path / "text_lm"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "qwen2"}))  # all the check reads
    reward = make_reward({"type": "dpo_implicit", "name": "self_feedback", "reward_model": tiny_vlm,
                          "ref_model": str(text_model)})
    with pytest.raises(ValueError, match=rf"'self_feedback'.*prompt r has 1 image.*{text_model} is text-only"):
        reward.score([record("r", [("A red circle.", "stop")], [shape_images["red_circle"]])])


def test_reward_model_refuses_images_by_name(shape_images):
    # Refused before the model is loaded (the path need not exist): the classifier reads text only.
    reward = make_reward({"type": "reward_model", "name": "rm_score", "model": "/models/text-rm"})
    with pytest.raises(ValueError, match=r"'rm_score'.*prompt r has 1 image.*/models/text-rm is a text-only "
                                         r"sequence classifier.*dpo_implicit.*judge.*drop the images"):
        reward.score([record("r", [("A red circle.", "stop")], [shape_images["red_circle"]])])


def test_judge_sends_a_path_image_as_a_data_url(shape_images):
    requests = []

    async def handle(request):
        requests.append(await request.json())
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": "A"}}]})

    inline = "data:image/png;base64,iVBORw0KGgo="
    rec = record("r", [("A red circle.", "stop"), ("A blue square.", "stop")], [shape_images["red_circle"], inline],
                 prompt="<image><image>Which is red?")
    with serve_chat_completions(handle) as url:
        scores = make_reward({"type": "judge", "endpoint": url, "model": "m", "both_orders": False}).score([rec])
    assert [v for v, _ in scores[0]] == [1.0, 0.0] and len(requests) == 1
    parts = requests[0]["messages"][0]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert urls[1] == inline and urls[0].startswith("data:image/png;base64,")
    assert base64.b64decode(urls[0].split(",", 1)[1]) == Path(shape_images["red_circle"]).read_bytes()
    assert parts[-1]["type"] == "text" and "Which is red?" in parts[-1]["text"] and "<image>" not in parts[-1]["text"]


# --- object_grounding ----------------------------------------------------------------------------

SYNONYMS = ROOT / "tests" / "data" / "benchmarks" / "synonyms.txt"


def grounding_record(samples, objects, where="top"):
    record = {"id": "c1", "task": "caption", "prompt": "Describe the image.", "images": ["scene.png"],
              "samples": [{"index": i, "text": text} for i, text in enumerate(samples)]}
    if where == "top":
        record["objects"] = objects
    elif where == "meta":
        record["meta"] = {"objects": objects}
    return record


def test_object_grounding_is_the_share_of_mentioned_objects_in_the_annotation():
    reward = make_reward({"type": "object_grounding", "synonyms": str(SYNONYMS)})
    captions = ["A dog sits next to a cat.",  # both annotated: 2/2
                "A dog and a pony.",  # a pony (horse) is not there: 1/2
                "Two puppies.",  # a synonym, plural: dog, 1/1
                "A sunny day."]  # no object of the vocabulary: no_mention (0.0)
    (row,) = reward.score([grounding_record(captions, ["dog", "kitten"], where="meta")])
    assert [value for value, _ in row] == [1.0, 0.5, 1.0, 0.0]
    assert row[1][1] == {"mentioned": ["dog", "horse"], "hallucinated": ["horse"], "covered": ["dog"],
                         "annotated": ["cat", "dog"]}


def test_object_grounding_without_annotation_or_with_unknown_objects_gives_no_value():
    reward = make_reward({"type": "object_grounding", "synonyms": str(SYNONYMS), "no_mention": 0.5})
    missing, unknown, text_task = reward.score([grounding_record(["A dog."], None, where="none"),
                                                grounding_record(["A dog."], ["unicorn"]),
                                                {**grounding_record(["A dog."], ["dog"]), "task": "math"}])
    assert missing[0][0] is None and "no annotated objects" in missing[0][1]["reason"]
    assert unknown[0][0] is None and "['unicorn'] are in no line" in unknown[0][1]["reason"]
    assert text_task[0][0] is None  # captions only, by default
    assert reward.score([grounding_record(["Nothing to see."], ["dog"])])[0][0][0] == 0.5
