"""RLAIF-V's divide-and-conquer feedback (juicebox.rewards.divide_conquer): its prompts and parsing as
upstream's, and the whole reward against a localhost OpenAI-compatible server whose split, question
and labeller replies (first-token top_logprobs) are hand-built, so every claim's probabilities and
the reward are known; then a reward shard killed while it labels, resumed with byte-identical output
and no question asked twice."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from aiohttp import web

from conftest import quick_sft, serve_chat_completions
from juicebox.io import write_jsonl
from juicebox.rewards import make_reward
from juicebox.rewards.divide_conquer import (QUESTION_PROMPT, SPLIT_PROMPT, question_prompt, read_list,
                                             split_prompt)


def test_split_prompt_is_upstreams_cut_to_300_space_separated_words():
    text = split_prompt("What is in the image?", "A red circle.", 300)
    assert text == SPLIT_PROMPT + "What is in the image?\nAnswer: A red circle."
    assert SPLIT_PROMPT.startswith("You are an expert in extracting facts from the given question-answer pair for "
                                   "an image.") and SPLIT_PROMPT.endswith("### Question-answer pair:\nQuestion: ")
    long = split_prompt("Describe.", " ".join(["word"] * 400), 300)
    assert len(long.split(" ")) == 300 and long.endswith("word")  # instructions count: the whole prompt is cut


def test_question_prompt_and_the_list_reader():
    assert question_prompt(["F1", "F2"]) == QUESTION_PROMPT + "\n- F1\n\n- F2\n"
    assert QUESTION_PROMPT.endswith("### Declarative sentences:")
    reply = "### Facts:\n- There is a red circle.\n\n-  The circle is large. \n   \n### done\n- "
    assert read_list(reply) == ["There is a red circle.", "The circle is large."]


# --- the whole reward against hand-built replies --------------------------------------------------

FACTS = {"A red circle and a dog.": ["There is a red circle.", "There is a dog."],
         "A red circle.": ["There is a red circle."],
         "Nothing.": []}
QUESTIONS = {"There is a red circle.": "Is there a red circle?", "There is a dog.": "Is there a dog?"}
# The labeller's first-token probabilities of each question: yes, Yes, no, No (and another token).
PROBS = {"Is there a red circle? Please answer yes or no.": {"yes": 0.6, "Yes": 0.2, "no": 0.1, "No": 0.05,
                                                              "maybe": 0.05},
         "Is there a dog? Please answer yes or no.": {"yes": 0.2, "Yes": 0.1, "no": 0.3, "No": 0.35,
                                                      "the": 0.05}}


class Replies:
    """A chat-completions handler: split, question or label, told from the request; counts each kind."""

    def __init__(self, label_delay: float = 0.0):
        self.calls, self.label_delay = Counter(), label_delay

    async def __call__(self, request):
        body = await request.json()
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        if body.get("logprobs"):
            self.calls["label"] += 1
            assert any(part.get("type") == "image_url" for part in content)  # the labeller sees the image
            if self.label_delay:
                time.sleep(self.label_delay)
            top = [{"token": token, "logprob": math.log(p)} for token, p in PROBS[text.strip()].items()]
            reply = {"content": "yes", "logprobs": {"content": [{"token": "yes", "top_logprobs": top}]}}
        elif "### Question-answer pair" in text:
            self.calls["split"] += 1
            answer = text.split("\nAnswer: ", 1)[1]
            reply = {"content": "### Facts:\n" + "".join(f"- {f}\n" for f in FACTS[answer])}
        else:
            self.calls["question"] += 1
            facts = [line[2:] for line in text.split("### Declarative sentences:")[1].split("\n") if line]
            reply = {"content": "### Modified sentences:\n" + "\n".join(f"- {QUESTIONS[f]}" for f in facts)}
        message = {"role": "assistant", "content": reply["content"]}
        return web.json_response({"choices": [{"index": 0, "message": message, "finish_reason": "stop",
                                               **({"logprobs": reply["logprobs"]} if "logprobs" in reply else {})}]})


@pytest.fixture
def endpoint():
    replies = Replies()
    with serve_chat_completions(replies) as url:
        yield url, replies


def spec(url: str) -> dict:
    writer = {"model": "writer", "engine": {"type": "openai", "endpoints": [url]}}
    return {"type": "divide_conquer", "split": writer, "labeller": {"model": "labeller", "endpoint": url}}


def caption_records(image: str, n: int = 1) -> list[dict]:
    return [{"id": f"c{i}", "task": "caption", "prompt": f"Describe picture {i}.", "images": [image],
             "samples": [{"index": k, "text": text} for k, text in
                         enumerate(["A red circle and a dog.", "A red circle.", "Nothing."])]} for i in range(n)]


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "red.png"
    Image.new("RGB", (16, 16), "red").save(path)
    return str(path)


def test_reward_is_minus_the_rejected_claims_with_every_probability_in_the_details(endpoint, image):
    url, replies = endpoint
    (row,) = make_reward(spec(url)).score(caption_records(image))
    both, one, none = row
    # red circle: P(yes)+P(Yes) 0.8 > 0.15, accepted; dog: 0.3 < 0.65, rejected
    assert both[0] == -1.0 and one[0] == 0.0 and none[0] is None
    first, second = both[1]["claims"]
    assert first == {"fact": "There is a red circle.", "question": "Is there a red circle? Please answer yes or no.",
                     "p_yes": pytest.approx(0.8), "p_no": pytest.approx(0.15), "accepted": True}
    assert second["accepted"] is False and second["p_no"] == pytest.approx(0.65)
    assert (both[1]["n_claims"], both[1]["n_rejected"]) == (2, 1)
    assert none[1]["reason"] == "no claim was read from the answer"
    assert replies.calls == {"split": 3, "question": 2, "label": 3}  # "Nothing." has no fact to ask about


def test_a_record_without_an_image_gets_no_value(endpoint):
    url, _ = endpoint
    record = {"id": "t", "task": "caption", "prompt": "Describe.", "samples": [{"index": 0, "text": "A dog."}]}
    (row,) = make_reward(spec(url)).score([record])
    assert row[0][0] is None and "against the image" in row[0][1]["reason"]


SHARD_SCRIPT = """
import json, sys
from juicebox.io import read_jsonl
from juicebox.rewards import RewardContext
from juicebox.rewards.shard import score_shard
records, output, settings = list(read_jsonl(sys.argv[1])), sys.argv[2], json.loads(sys.argv[3])
score_shard(records, output, settings, RewardContext(seed=3), {})
"""


def run_shard(records_path, output, settings, wait: bool = True):
    return subprocess.Popen([sys.executable, "-c", SHARD_SCRIPT, str(records_path), str(output), json.dumps(settings)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_killed_reward_shard_resumes_byte_identical_without_asking_again(image, tmp_path):
    records = caption_records(image, n=4)
    write_jsonl(tmp_path / "rollouts.jsonl", records)
    replies = Replies(label_delay=0.3)
    with serve_chat_completions(replies) as url:
        settings = {"functions": [spec(url)], "chunk": 4}  # one chunk: nothing is written before the labels
        reference = run_shard(tmp_path / "rollouts.jsonl", tmp_path / "reference.jsonl", settings)
        assert reference.wait(120) == 0, reference.stderr.read()
        assert replies.calls == {"split": 12, "question": 8, "label": 12}
        replies.calls.clear()
        killed = run_shard(tmp_path / "rollouts.jsonl", tmp_path / "shard.jsonl", settings)
        deadline = time.monotonic() + 120
        while replies.calls["label"] < 5 and time.monotonic() < deadline:  # labelling the third answer
            time.sleep(0.05)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        assert not (tmp_path / "shard.jsonl").exists() and (tmp_path / "shard.jsonl.cache").is_dir()
        asked = Counter(replies.calls)
        (cache,) = (tmp_path / "shard.jsonl.cache").iterdir()
        entries = [json.loads(line) for line in cache.read_text().splitlines()]
        labelled = sum(len(e["value"]) for e in entries if e["stage"] == "labels")  # questions of answers done
        assert {e["stage"] for e in entries} == {"facts", "questions", "labels"} and 0 < labelled < 12
        resumed = run_shard(tmp_path / "rollouts.jsonl", tmp_path / "shard.jsonl", settings)
        assert resumed.wait(120) == 0, resumed.stderr.read()
    assert (tmp_path / "shard.jsonl").read_bytes() == (tmp_path / "reference.jsonl").read_bytes()
    assert not (tmp_path / "shard.jsonl.cache").exists()  # the cache goes with the finished shard
    # the resumed run asked no split or question again, and only the labels of answers not yet labelled
    again = replies.calls - asked
    assert again["split"] == 0 and again["question"] == 0 and again["label"] == 12 - labelled


# --- through a real `transformers serve` and a local VLM labeller -------------------------------------

@pytest.fixture(scope="module")
def writer_model(tmp_path_factory) -> str:
    """The tiny text model after a short SFT on the split and question prompts of two captions, so that
    its replies are ``- ...`` lists (an untrained tiny model's argmax tokens decode to nothing)."""
    from juicebox.models import TinySpecOptions, build_tiny_model

    pairs = {"A red circle and a dog.": ["There is a red circle.", "There is a dog."],
             "A blue square.": ["There is a blue square."]}
    records = []
    for answer, facts in pairs.items():
        records.append({"prompt": split_prompt("Describe the image.", answer, 300),
                        "answer": "### Facts:\n" + "\n".join(f"- {fact}" for fact in facts)})
        records.append({"prompt": question_prompt(facts),
                        "answer": "### Modified sentences:\n" + "\n".join(f"- Is {f[9:-1]} there?" for f in facts)})
    records = [{"id": f"r{i}", "task": "caption", **r} for i, r in enumerate(records * 4)]
    folder = tmp_path_factory.mktemp("writer")
    texts = [r["prompt"] for r in records] + [r["answer"] for r in records]
    build_tiny_model(folder / "base", texts, seed=0, spec=TinySpecOptions(max_position_embeddings=1024))
    return quick_sft(folder, records, epochs=30, batch_size=8, learning_rate=0.01, max_length=1024)


@pytest.mark.server
def test_divide_conquer_through_transformers_serve_and_a_local_labeller(writer_model, tiny_vlm, image, tmp_path):
    """Split and questions from a real `transformers serve` of the writer model, labels from the tiny VLM's
    first-token probabilities, each claim's equal to the VLM's softmax computed here directly."""
    import torch

    from juicebox.engines.servers import launch
    from juicebox.images import load_image
    from juicebox.models import load_model
    from juicebox.records import with_image_parts

    record = caption_records(image)[0]
    record["samples"] = [{"index": 0, "text": "A red circle and a dog."}, {"index": 1, "text": "A blue square."}]
    with launch("transformers", writer_model, None, str(tmp_path / "logs"), startup_timeout=300) as (urls, name):
        writer = {"model": name, "engine": {"type": "openai", "endpoints": urls}}
        reward = make_reward({"type": "divide_conquer", "split": writer, "labeller": {"model": tiny_vlm}})
        (row,) = reward.score([record])
    claims = [claim for _, details in row for claim in details.get("claims", [])]
    assert claims, row  # the writer's replies were read as facts and questions
    loaded = load_model(tiny_vlm)
    tokenizer = loaded.processing.tokenizer
    for value, details in row:
        assert value == -details["n_rejected"] and details["n_claims"] == len(details["claims"])
    for claim in claims:
        assert claim["question"].endswith(" Please answer yes or no.")
        assert claim["accepted"] == (claim["p_yes"] > claim["p_no"]) and claim["p_yes"] + claim["p_no"] <= 1.0
        messages = with_image_parts([{"role": "user", "content": claim["question"]}], 1)
        text = loaded.processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        encoded = loaded.processing(text=[text], images=[load_image(image)], return_tensors="pt",
                                    add_special_tokens=False)
        with torch.inference_mode():
            probs = torch.softmax(loaded.model(**encoded).logits[0, -1].float(), dim=-1)
        expected = [sum(float(probs[tokenizer.encode(w, add_special_tokens=False)[0]]) for w in words)
                    for words in (("yes", "Yes"), ("no", "No"))]
        assert [claim["p_yes"], claim["p_no"]] == pytest.approx(expected, rel=1e-4)
