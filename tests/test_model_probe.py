"""The model probe against a direct forward pass: the loss of each record's SFT target (text model,
and a tiny VLM that sees the record's image), and reward stats from hand-written scored rollouts."""

import statistics

import pytest
import torch

from juicebox.io import read_jsonl, write_jsonl
from juicebox.ksigma import stat_columns, summarize_columns
from juicebox.model_probe import probe, reward_stats
from juicebox.records import sft_target
from juicebox.models import build_tiny_model, load_model
from juicebox.models import TinySpecOptions

TEXTS = ["What is 2 + 3?", "5", "What is 7 + 1?", "8", "Name a colour.", "red", "A short caption."] * 20


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe_model") / "model"
    spec = TinySpecOptions(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    build_tiny_model(path, TEXTS, seed=3, spec=spec)
    return str(path)


def direct_loss(path, messages, target, images=None):
    """Mean NLL of the target tokens and <|im_end|> after the chat prompt, one unpadded forward pass."""
    loaded = load_model(path, dtype="float32", device="cpu")
    processing, tokenizer = loaded.processing, loaded.tokenizer
    prompt = processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if images:
        from juicebox.images import load_image

        enc = processing(text=[prompt], images=[[load_image(i) for i in images]], add_special_tokens=False,
                         return_tensors="pt")
        prompt_ids, extra = enc["input_ids"][0].tolist(), {"pixel_values": enc["pixel_values"]}
    else:
        prompt_ids, extra = tokenizer(prompt, add_special_tokens=False)["input_ids"], {}
    answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    ids = torch.tensor([prompt_ids + answer])
    with torch.no_grad():
        logits = loaded.model(input_ids=ids, **extra).logits[0].float()
    p = len(prompt_ids)
    nll = torch.nn.functional.cross_entropy(logits[p - 1:p - 1 + len(answer)], ids[0, p:], reduction="mean")
    return nll.item(), len(answer)


def test_sft_target_is_the_answer_else_the_first_reference():
    assert sft_target({"answer": "5", "references": ["five"]}) == "5"
    assert sft_target({"answer": None, "references": ["A red circle.", "x"]}) == "A red circle."
    assert sft_target({"answer": "", "references": []}) is None and sft_target({}) is None


@pytest.mark.train
def test_text_model_loss_matches_a_direct_forward_pass(tiny_text):
    records = [
        {"id": "a", "task": "math", "prompt": "What is 2 + 3?", "answer": "5"},
        {"id": "b", "task": "caption", "prompt": [{"role": "user", "content": "Name a colour."}],
         "references": ["red", "blue"]},
        {"id": "c", "task": "chat", "prompt": "No gold text here."},
        {"id": "d", "task": "math", "prompt": "What is 7 + 1? Show the steps of the sum, please.",
         "answer": "8 because 7 + 1 = 8"},
    ]
    rows = probe(records, tiny_text, batch_size=2, device="cpu", dtype="float32")
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert rows[2]["stats"] == {}  # no target: no model stats
    for row, record in zip(rows, records):
        if record["id"] == "c":
            continue
        messages = record["prompt"] if isinstance(record["prompt"], list) else \
            [{"role": "user", "content": record["prompt"]}]
        loss, tokens = direct_loss(tiny_text, messages, sft_target(record))
        assert row["stats"]["model_loss"] == pytest.approx(loss, rel=1e-4)
        assert row["stats"]["model_tokens"] == tokens
    # The rows are the Data-Juicer probe's shape: stat_columns and the summary read them.
    summary = summarize_columns(stat_columns(rows))
    assert set(summary) == {"model_loss", "model_tokens"} and summary["model_loss"]["count"] == 3


@pytest.mark.train
def test_records_over_max_length_get_no_model_stats(tiny_text):
    records = [{"id": "short", "prompt": "What is 2 + 3?", "answer": "5"},
               {"id": "long", "prompt": "What is 2 + 3? " * 40, "answer": "5"}]
    rows = probe(records, tiny_text, max_length=64, device="cpu")
    assert "model_loss" in rows[0]["stats"] and rows[1]["stats"] == {}


@pytest.mark.train
def test_vlm_loss_sees_the_image(tiny_vlm, shape_images):
    records = [
        {"id": "v1", "task": "caption", "prompt": "Describe the image.", "references": ["A red circle."],
         "images": [shape_images["red_circle"]]},
        {"id": "v2", "task": "caption", "prompt": "Describe the image.", "references": ["A red circle."],
         "images": [shape_images["blue_square"]]},
        {"id": "t", "task": "vqa", "prompt": "What colour is the shape?", "answer": "red"},
    ]
    rows = {r["id"]: r["stats"] for r in probe(records, tiny_vlm, batch_size=2, device="cpu", dtype="float32")}
    for record in records:
        loss, tokens = direct_loss(tiny_vlm, [{"role": "user", "content": [{"type": "image"}] * len(
            record.get("images", [])) + [{"type": "text", "text": record["prompt"]}]}], sft_target(record),
            record.get("images"))
        assert rows[record["id"]]["model_loss"] == pytest.approx(loss, rel=1e-4)
        assert rows[record["id"]]["model_tokens"] == tokens
    # Same prompt and caption, another picture: another loss (the model is shown the image).
    assert abs(rows["v1"]["model_loss"] - rows["v2"]["model_loss"]) > 1e-4


@pytest.mark.train
def test_reward_stats_from_scored_rollouts(tmp_path, tiny_text):
    scored = tmp_path / "scored.jsonl"
    write_jsonl(scored, [
        {"id": "a", "samples": [{"reward": 1.0}, {"reward": 0.0}, {"reward": 1.5}, {"reward": None}]},
        {"id": "b", "samples": [{"reward": None}, {"reward": None}]},
        {"id": "c", "samples": [{"reward": 0.25}]},
        {"id": "elsewhere", "samples": [{"reward": 1.0}]},
    ])
    stats = reward_stats(read_jsonl(scored), pass_threshold=1.0)
    assert stats["a"] == {"reward_mean": pytest.approx(2.5 / 3), "reward_std": pytest.approx(
        statistics.pstdev([1.0, 0.0, 1.5])), "pass_rate": pytest.approx(2 / 3)}
    assert "b" not in stats  # no sample got a reward
    assert stats["c"] == {"reward_mean": 0.25, "reward_std": 0.0, "pass_rate": 0.0}
    assert reward_stats(read_jsonl(scored), pass_threshold=0.2)["c"]["pass_rate"] == 1.0
    records = [{"id": "a", "prompt": "What is 2 + 3?", "answer": "5"},
               {"id": "b", "prompt": "What is 7 + 1?", "answer": "8"},
               {"id": "c", "prompt": "Name a colour."},
               {"id": "d", "prompt": "Not rolled out."}]
    rows = {r["id"]: r["stats"] for r in probe(records, tiny_text, scored=read_jsonl(scored), device="cpu")}
    assert set(rows["a"]) == {"model_loss", "model_tokens", "reward_mean", "reward_std", "pass_rate"}
    assert set(rows["b"]) == {"model_loss", "model_tokens"}
    assert rows["c"] == stats["c"] and rows["d"] == {}
