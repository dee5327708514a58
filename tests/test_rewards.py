"""Rewards against hand-computed values: math-verify, COCO captions, the DPO implicit reward from
unbatched forward passes, a reward model's logit, an LLM judge on a real localhost server, a
Python function, and the weighted combination with None propagation."""

import json
import logging
import math
import re

import pytest
import torch
from aiohttp import web
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, Qwen2Config,
                          Qwen2ForSequenceClassification)

from conftest import TINY_SPEC, juicebox_log_file, key_prefixes_in, serve_chat_completions
from juicebox.models import build_tiny_model
from juicebox.rewards import REWARDS, CombinedReward, RewardContext, answer_logprobs, make_reward
from juicebox.rewards.dpo_implicit import end_of_turn_ids
from juicebox.rewards.judge import DEFAULT_TEMPLATE, parse_verdict
from juicebox.rewards.reward_model import _free_pad_id

TEXTS = ["What is 2 plus 3?", "The answer is 5.", "A dog runs on the grass.", "Describe the picture.",
         "A red car is parked on the street.", "Two cats sleep on a sofa."] * 3



def judge_reward(**options):
    """A judge reward with these options, built as the reward rule builds it."""
    return make_reward({"type": "judge", **options})


def python_reward(**options):
    """A python reward with these options."""
    return make_reward({"type": "python", **options})


def dpo_reward(**options):
    """A dpo_implicit reward with these options (no context: no policy or base model)."""
    return make_reward({"type": "dpo_implicit", **options})

def record(pid, samples, task="math", prompt=None, answer="5", references=(), images=()):
    """A rollout record; ``samples`` are texts, or (text, finish_reason) tuples."""
    rows = []
    for i, s in enumerate(samples):
        text, finish = s if isinstance(s, tuple) else (s, "stop")
        rows.append({"index": i, "text": text, "n_tokens": len(text.split()), "finish_reason": finish})
    return {"id": pid, "task": task, "prompt": prompt if prompt is not None else f"question {pid}",
            "answer": answer, "references": list(references), "images": list(images), "samples": rows,
            "engine": {"type": "hf"}, "model": "tiny", "sampling": {"n": 4}, "seed": 1}


def test_registry_knows_every_type():
    assert set(REWARDS) == {"verifier_math", "reference_caption", "dpo_implicit", "reward_model", "judge", "python",
                            "short_answer", "math_steps", "object_grounding", "divide_conquer"}


# --- verifier_math ----------------------------------------------------------------------------

def test_verifier_math_right_wrong_garbage_and_uneven_samples():
    records = [
        record("m1", ["5", "The answer is \\boxed{5}.", "6", "%%}{garbage\\frac{", ""]),
        record("m2", ["1000"], answer="She pays 600 + 400 = 1,000.\n#### 1,000"),
        record("m3", []),
        record("m4", ["5"], answer=None),
        record("c1", ["a dog"], task="caption"),
    ]
    scores = make_reward({"type": "verifier_math"}).score(records)
    assert [v for v, _ in scores[0]] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert scores[0][0][1]["gold"] == "5"
    assert scores[1] == [(1.0, {"gold": "1000", "extracted": "1000"})]
    assert scores[2] == []
    assert scores[3][0][0] is None and "gold answer" in scores[3][0][1]["reason"]
    assert scores[4][0][0] is None and "does not apply to task 'caption'" in scores[4][0][1]["reason"]


# --- reference_caption ------------------------------------------------------------------------

def test_reference_caption_ranks_the_reference_above_an_unrelated_caption():
    dog = ["a dog runs on the grass", "a brown dog running on green grass"]
    car = ["a red car parked on the street", "a red car is parked by the road"]
    records = [record("c1", ["a dog runs on the grass", "the stock market fell sharply today"], task="caption",
                      references=dog),
               record("c2", ["purple elephants sing opera", "a red car parked on the street"], task="caption",
                      references=car),
               record("c3", ["anything"], task="caption", references=[])]
    reward = make_reward({"type": "reference_caption"})
    assert reward.tasks == ["caption"] and reward.provenance()["metric"] == "CIDEr"
    scores = reward.score(records)
    assert scores[0][0][0] > scores[0][1][0] and scores[1][1][0] > scores[1][0][0]
    assert scores[0][1][0] == pytest.approx(0.0, abs=1e-9)
    details = scores[0][0][1]
    assert details["batch_items"] == 4 and details["CIDEr"] == scores[0][0][0]
    assert {"BLEU-1", "BLEU-4", "METEOR", "ROUGE_L"} <= set(details)
    assert scores[2][0][0] is None and "reference" in scores[2][0][1]["reason"]
    with pytest.raises(ValueError, match=r"rewards\.metric: expected one of 'BLEU-1', .*found 'SPICE'"):
        make_reward({"type": "reference_caption", "metric": "SPICE"})


# --- dpo_implicit -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two differently seeded tiny causal LMs with the same tokenizer, a LoRA adapter over the first,
    and a tiny reward model."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_model(root / "a", TEXTS, 1, TINY_SPEC)
    build_tiny_model(root / "b", TEXTS, 2, TINY_SPEC)
    tokenizer = AutoTokenizer.from_pretrained(root / "a")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(3)
    Qwen2ForSequenceClassification(config).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(5)
    get_peft_model(AutoModelForCausalLM.from_pretrained(root / "a"), lora).save_pretrained(root / "lora")
    return {"a": str(root / "a"), "b": str(root / "b"), "rm": str(root / "rm"), "lora": str(root / "lora")}


def hand_logprobs(path, messages, answer, end_of_turn=True, adapter=None):
    """Log-probs of the answer tokens (+ <|im_end|>) from one unbatched, unpadded forward pass."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model = (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()
    prompt = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                       add_special_tokens=False)["input_ids"]
    tail = [tokenizer.convert_tokens_to_ids("<|im_end|>")] if end_of_turn else []
    ans = tokenizer(answer, add_special_tokens=False)["input_ids"] + tail
    with torch.no_grad():
        logits = model(torch.tensor([prompt + ans])).logits[0]
    return [torch.log_softmax(logits[len(prompt) + k - 1], -1)[t].item() for k, t in enumerate(ans)]


def as_messages(prompt):
    """A record's prompt as chat messages, as the rewards read it."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe the picture."}]


def dpo_records():
    return [record("p1", ["The answer is 5.", "5", ("A dog runs on the grass and", "length")]),
            record("p2", ["Two cats sleep on a sofa."], prompt=CHAT),
            record("p3", [])]


@pytest.mark.train
def test_answer_logprobs_batched_equals_unbatched(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny["a"])
    assert end_of_turn_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model = AutoModelForCausalLM.from_pretrained(tiny["a"]).eval()
    messages = [[{"role": "user", "content": "What is 2 plus 3?"}], CHAT, CHAT]
    answers = ["The answer is 5.", "5", ""]
    got = answer_logprobs(model, tokenizer, messages, answers, batch_size=2, end_of_turn=[True, True, False])
    assert got[2] == []
    for m, a, lp in zip(messages, answers[:2], got):
        assert lp == pytest.approx(hand_logprobs(tiny["a"], m, a), abs=1e-5)


@pytest.mark.train
def test_dpo_implicit_same_model_is_exactly_zero(tiny):
    reward = make_reward({"type": "dpo_implicit", "reward_model": tiny["a"], "ref_model": tiny["a"]})
    scores = reward.score(dpo_records())
    values = [(v, d) for row in scores for v, d in row]
    assert len(values) == 4 and scores[2] == []
    for value, details in values:
        assert value == 0.0 and all(details[k] == 0.0 for k in ("sum", "avg", "min", "last"))


@pytest.mark.train
def test_dpo_implicit_matches_hand_computed_log_probs(tiny):
    beta = 0.5
    context = RewardContext(policy_model=tiny["b"], base_model=tiny["a"])
    reward = make_reward({"type": "dpo_implicit", "beta": beta, "batch_size": 2}, context)
    assert reward.provenance()["reward_model"] == tiny["b"] and reward.provenance()["ref_model"] == tiny["a"]
    records = dpo_records()
    scores = reward.score(records)
    for rec, row in zip(records, scores):
        for sample, (value, details) in zip(rec["samples"], row):
            messages = as_messages(rec["prompt"])
            stopped = sample["finish_reason"] == "stop"
            diff = [x - y for x, y in zip(hand_logprobs(tiny["b"], messages, sample["text"], stopped),
                                          hand_logprobs(tiny["a"], messages, sample["text"], stopped))]
            assert details["n_tokens"] == len(diff)
            # β once: avg is β·mean, not β²·mean as upstream.
            assert details["sum"] == pytest.approx(beta * sum(diff), abs=1e-5)
            assert details["avg"] == pytest.approx(beta * sum(diff) / len(diff), abs=1e-5)
            assert details["min"] == pytest.approx(beta * min(diff), abs=1e-5)
            assert details["last"] == pytest.approx(beta * diff[-1], abs=1e-5)
            assert value == details["sum"] and abs(value) > 1e-3

    combined = CombinedReward([{"type": "dpo_implicit", "variant": "avg", "reward_model": tiny["b"],
                                "ref_model": tiny["a"], "weight": 2.0}])
    sample = combined.score_records(records)[0]["samples"][0]
    d = sample["details"]["dpo_implicit"]
    assert sample["rewards"]["dpo_implicit"] == d["avg"] and sample["reward"] == pytest.approx(2 * d["avg"])
    assert {f"dpo_implicit.{k}" for k in ("sum", "avg", "min", "last")} <= set(sample["rewards"])


@pytest.mark.train
def test_dpo_implicit_adapter_against_its_own_base(tiny):
    """Reward = base + LoRA adapter, reference = the same base: the adapter is switched off for it."""
    reward = make_reward({"type": "dpo_implicit", "reward_model": tiny["a"], "adapter": tiny["lora"],
                          "ref_model": tiny["a"], "variant": "last"})
    rec = record("p1", ["The answer is 5.", "5"])
    scores = reward.score([rec])
    messages = as_messages(rec["prompt"])
    for sample, (value, details) in zip(rec["samples"], scores[0]):
        diff = [x - y for x, y in zip(hand_logprobs(tiny["a"], messages, sample["text"], adapter=tiny["lora"]),
                                      hand_logprobs(tiny["a"], messages, sample["text"]))]
        assert value == details["last"] == pytest.approx(0.1 * diff[-1], abs=1e-5)
        assert details["sum"] == pytest.approx(0.1 * sum(diff), abs=1e-5) and abs(details["sum"]) > 1e-3


def test_dpo_implicit_rejects_bad_config():
    with pytest.raises(ValueError, match=r"variant: expected one of 'sum', 'avg', 'min', 'last', found 'mean'"):
        dpo_reward(reward_model="x", ref_model="y", variant="mean")
    with pytest.raises(ValueError, match="reward model and a reference model"):
        dpo_reward()


# --- reward_model -----------------------------------------------------------------------------

@pytest.mark.train
def test_reward_model_score_is_its_logit(tiny):
    records = [record("p1", ["The answer is 5.", "5"], prompt="What is 2 plus 3?"),
               record("p2", ["Two cats sleep on a sofa and a dog runs on the grass."], prompt=CHAT)]
    scores = make_reward({"type": "reward_model", "model": tiny["rm"], "batch_size": 2}).score(records)
    tokenizer = AutoTokenizer.from_pretrained(tiny["rm"])
    model = AutoModelForSequenceClassification.from_pretrained(tiny["rm"]).eval()
    for rec, row in zip(records, scores):
        messages = as_messages(rec["prompt"])
        for sample, (value, details) in zip(rec["samples"], row):
            text = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": sample["text"]}],
                                                 tokenize=False)
            assert text.endswith(sample["text"] + "<|im_end|>\n")
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                expected = model(torch.tensor([ids])).logits[0, 0].item()
            assert value == pytest.approx(expected, abs=1e-5) and details["n_tokens"] == len(ids)
    with pytest.raises(ValueError, match="label 1 but"):
        make_reward({"type": "reward_model", "model": tiny["rm"], "label": 1}).score(records)


def test_pad_id_never_occurs_in_the_batch():
    assert _free_pad_id([[1, 2], [3]], [2, None, 5], 10) == 5
    assert _free_pad_id([[9, 8]], [9], 10) == 7


# --- judge ------------------------------------------------------------------------------------

KEY = "sk-juicebox-test-3f9a1c"
TEMPLATE = "Q: {question}\n<A>{answer_a}</A>\n<B>{answer_b}</B>\nWhich is better? A, B or tie."


class FakeJudge:
    """A deterministic judge LLM on localhost, behaviour chosen by the requested model name:
    ``longer`` prefers the longer answer, ``always_a`` always says A, ``garbage`` says neither.
    It answers 401 unless the Authorization header carries KEY, and fails the first
    ``fail_first`` requests with a 500 whose text echoes the header (to catch leaks). Model
    ``echo-<status>-<pad>`` answers that status with the key after ``pad`` dots, and
    ``malformed-<pad>`` a 200 without choices whose JSON holds the key after ``pad`` dots (to
    catch a key cut in two by the error-text limit)."""

    def __init__(self):
        self.requests, self.failures, self.fail_first, self.images = [], 0, 0, 0

    async def handle(self, request):
        auth = request.headers.get("Authorization")
        if auth != f"Bearer {KEY}":
            return web.Response(status=401, text="bad key")
        body = await request.json()
        if body["model"].startswith("echo-"):
            _, status, pad = body["model"].split("-")
            return web.Response(status=int(status), text="." * int(pad) + KEY + " <- your key")
        if body["model"].startswith("malformed-"):
            return web.json_response({"error": "." * int(body["model"].split("-")[1]) + KEY + " <- your key"})
        if self.fail_first > 0:
            self.fail_first -= 1
            self.failures += 1
            return web.Response(status=500, text=f"upstream broke (you sent {auth})")
        self.requests.append(body)
        content = body["messages"][-1]["content"]
        if isinstance(content, list):
            self.images += sum(p["type"] == "image_url" for p in content)
            content = next(p["text"] for p in content if p["type"] == "text")
        a, b = re.search(r"<A>(.*)</A>\n<B>(.*)</B>", content, re.S).groups()
        verdict = {"longer": "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie",
                   "always_a": "A", "garbage": "I cannot decide"}[body["model"]]
        reply = f"[[{verdict}]] because of reasons" if body["model"] == "longer" else verdict
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": reply}}]})


@pytest.fixture
def judge_server(monkeypatch, caplog):
    """The fake judge served on a free localhost port from a thread; yields (url, state)."""
    monkeypatch.setenv("JUDGE_KEY", KEY)
    monkeypatch.setattr(logging.getLogger("juicebox"), "propagate", True)  # setup_logging turns it off
    caplog.set_level(logging.DEBUG, logger="juicebox")
    state = FakeJudge()
    with serve_chat_completions(state.handle) as url:
        yield url, state


def judge(url, model="longer", **keys):
    return make_reward({"type": "judge", "endpoint": url + "/v1", "model": model, "api_key_env": "JUDGE_KEY",
                        "template": TEMPLATE, "backoff": 0.01, **keys}, RewardContext(seed=7))


def judge_records():
    return [record("j1", ["x", "xx", "xxxx"]), record("j2", ["ab", "cd"]), record("j3", ["alone"]),
            record("j4", [])]


def assert_no_key(*things):
    for thing in things:
        assert KEY not in (thing if isinstance(thing, str) else json.dumps(thing))


def test_judge_win_rates_in_both_orders(judge_server, caplog):
    url, state = judge_server
    reward = judge(url)
    scores = reward.score(judge_records())
    assert [v for v, _ in scores[0]] == [0.0, 0.5, 1.0]
    assert scores[0][2][1] == {"wins": 4, "ties": 0, "losses": 0, "comparisons": 4, "unparsed": 0, "failed": 0}
    assert [v for v, _ in scores[1]] == [0.5, 0.5] and scores[1][0][1]["ties"] == 2
    assert scores[2][0][0] is None and "fewer than two samples" in scores[2][0][1]["reason"]
    assert scores[3] == []
    assert len(state.requests) == 3 * 2 + 1 * 2
    orders = {re.search(r"<A>(.*)</A>\n<B>(.*)</B>", r["messages"][0]["content"], re.S).groups()
              for r in state.requests}
    assert ("x", "xx") in orders and ("xx", "x") in orders
    assert state.requests[0]["temperature"] == 0.0 and state.requests[0]["model"] == "longer"
    assert reward.provenance()["api_key_env"] == "JUDGE_KEY"
    assert_no_key(scores, reward.provenance(), caplog.text)


def test_judge_both_orders_cancels_position_bias(judge_server):
    url, _ = judge_server
    both = judge(url, model="always_a").score(judge_records()[:1])
    assert [v for v, _ in both[0]] == [0.5, 0.5, 0.5]
    one = judge(url, model="always_a", both_orders=False).score(judge_records()[:1])
    assert [v for v, _ in one[0]] == [1.0, 0.5, 0.0]


def test_judge_unparseable_replies_are_counted_ties(judge_server):
    url, _ = judge_server
    scores = judge(url, model="garbage").score(judge_records()[:1])
    assert [v for v, _ in scores[0]] == [0.5, 0.5, 0.5]
    assert all(d["unparsed"] == d["comparisons"] == 4 for _, d in scores[0])


def test_judge_retries_server_errors_and_never_leaks_the_key(judge_server, caplog):
    url, state = judge_server
    state.fail_first = 2
    scores = judge(url, retries=3).score(judge_records()[:1])
    assert state.failures == 2 and [v for v, _ in scores[0]] == [0.0, 0.5, 1.0]
    assert "retry 1/3" in caplog.text and "HTTP 500" in caplog.text and "Bearer ***" in caplog.text

    state.fail_first = 2
    failed = judge(url, retries=1, both_orders=False).score([record("j5", ["x", "xx"])])
    assert [v for v, _ in failed[0]] == [None, None]
    assert "HTTP 500" in failed[0][0][1]["reason"] and failed[0][0][1]["failed"] == 1
    assert_no_key(scores, failed, caplog.text)


def test_judge_never_leaks_part_of_a_key_cut_by_the_error_limit(judge_server, caplog, tmp_path):
    """Error bodies are kept to 300 characters: a key echoed across the cut must not leave its
    prefix in the log, the details or the failure messages (scrub first, then cut)."""
    url, _ = judge_server
    log_file = tmp_path / "reward.log"
    results, reasons = [], []
    with juicebox_log_file(log_file):
        cases = [(f"echo-{status}-{pad}", pad) for status in (500, 400)  # retried, then not retryable
                 for pad in range(300 - len(KEY) - 2, 300 + 3)]
        # the JSON's repr starts with "{'error': '" (11 characters): these pads cover the cut too
        cases += [(f"malformed-{pad}", pad + 11) for pad in range(300 - len(KEY) - 15, 300 + 3)]
        for model, offset in cases:
            scores = judge(url, model=model, retries=1, both_orders=False).score([record("e", ["x", "xx"])])
            assert [v for v, _ in scores[0]] == [None, None], model
            reason = scores[0][0][1]["reason"]
            assert ("HTTP" if model.startswith("echo") else "malformed reply") in reason, reason
            if offset + 3 <= 300:  # the scrubbed key ("***") is inside the 300 characters kept
                assert "***" in reason, (model, reason)
            results.append(scores)
            reasons.append(reason)
    assert "retry 1/1" in caplog.text and "judge: request 0 failed" in caplog.text
    for name, text in [("log file", log_file.read_text(encoding="utf-8")), ("caplog", caplog.text),
                       ("details", json.dumps(results)), ("failure messages", "\n".join(reasons))]:
        leaked = key_prefixes_in(text, KEY)
        assert not leaked, f"{name} holds a prefix of the key: {leaked[-1]!r}"


def test_judge_max_pairs_is_a_seeded_draw_per_prompt(judge_server, tmp_path):
    url, state = judge_server
    image = tmp_path / "pic.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    rec = record("j6", ["a", "bb", "ccc", "dddd"], images=[str(image)])
    reward = judge(url, max_pairs=2)
    assert reward.pairs(rec) == judge(url, max_pairs=2).pairs(rec) and len(reward.pairs(rec)) == 2
    scores = reward.score([rec])
    assert len(state.requests) == 4 and state.images == 4
    assert sum(d["comparisons"] for _, d in scores[0]) == 2 * 4


def test_judge_config_errors(monkeypatch):
    monkeypatch.delenv("NO_SUCH_JUDGE_KEY", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_JUDGE_KEY"):
        judge_reward(endpoint="http://127.0.0.1:1", model="m", api_key_env="NO_SUCH_JUDGE_KEY")
    with pytest.raises(ValueError, match="template must use exactly"):
        judge_reward(endpoint="http://127.0.0.1:1", model="m", template="{question} {answer_a}")
    assert judge_reward(endpoint="http://127.0.0.1:1/", model="m", template=DEFAULT_TEMPLATE).endpoint == "http://127.0.0.1:1"


def test_parse_verdict():
    assert [parse_verdict(r) for r in ["A", "[[B]]", "Tie.", "a tie", "Answer A is better", "**B**", "", "ABBA"]] \
        == ["A", "B", "tie", "tie", "A", "B", None, None]


# --- python -----------------------------------------------------------------------------------

@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "juicebox_test_reward_fns.py"
    path.write_text(
        "def length(record, sample):\n    return len(sample['text'])\n\n"
        "def maybe(record, sample):\n    return None if sample['text'] == 'skip' else 1.0\n\n"
        "def broken(record, sample):\n    raise KeyError('nope')\n\n"
        "def wrong(record, sample):\n    return 'high'\n", encoding="utf-8")
    return path


def test_python_reward_from_path_and_from_module(reward_file, monkeypatch):
    records = [record("q1", ["abc", "de"]), record("q2", [])]
    by_path = python_reward(function="length", path=str(reward_file))
    assert [[v for v, _ in row] for row in by_path.score(records)] == [[3.0, 2.0], []]
    monkeypatch.syspath_prepend(str(reward_file.parent))
    by_module = make_reward({"type": "python", "function": "juicebox_test_reward_fns:length"})
    assert [[v for v, _ in row] for row in by_module.score(records)] == [[3.0, 2.0], []]
    assert by_module.provenance() == {"type": "python", "tasks": None,
                                      "function": "juicebox_test_reward_fns:length", "path": None}


def test_python_reward_errors_name_the_function_and_prompt(reward_file):
    with pytest.raises(RuntimeError, match=r"broken: prompt q7 sample 0: KeyError"):
        python_reward(function="broken", path=str(reward_file)).score([record("q7", ["x"])])
    with pytest.raises(TypeError, match=r"wrong: prompt q8 sample 0: returned 'high'"):
        python_reward(function="wrong", path=str(reward_file)).score([record("q8", ["x"])])
    with pytest.raises(ValueError, match="has no function 'absent'"):
        python_reward(function="absent", path=str(reward_file))


# --- combined ---------------------------------------------------------------------------------

def test_combined_weights_and_task_applicability(reward_file):
    specs = [{"type": "verifier_math", "weight": 2.0},
             {"type": "python", "name": "length", "function": "length", "path": str(reward_file), "weight": 0.5,
              "tasks": ["math", "caption"]}]
    combined = CombinedReward(specs)
    records = [record("m1", ["5", "7"]), record("c1", ["a dog"], task="caption"), record("m2", []),
               record("t1", ["hello"], task="chat")]
    out = combined.score_records(records)
    m1 = out[0]["samples"]
    assert [s["reward"] for s in m1] == [2.0 * 1 + 0.5 * 1, 0.0 + 0.5 * 1]
    assert m1[0]["rewards"] == {"verifier_math": 1.0, "length": 1.0} and m1[0]["reward_reason"] is None
    assert m1[1]["details"]["verifier_math"]["extracted"] == "7" and m1[1]["text"] == "7"
    c1 = out[1]["samples"][0]
    assert c1["reward"] == 0.5 * 5 and c1["rewards"] == {"length": 5.0}
    assert out[2]["samples"] == []
    t1 = out[3]["samples"][0]
    assert t1["reward"] is None and t1["rewards"] == {} and "no reward applies to task 'chat'" in t1["reward_reason"]
    assert records[0]["samples"][0].get("reward") is None  # the input records are left as they were
    assert [p["name"] for p in combined.provenance()] == ["verifier_math", "length"]
    assert combined.provenance()[1]["weight"] == 0.5


def test_combined_none_is_never_zero(reward_file):
    combined = CombinedReward([{"type": "verifier_math"},
                               {"type": "python", "function": "maybe", "path": str(reward_file), "weight": 0.0}])
    samples = combined.score_records([record("m1", ["5", "skip"])])[0]["samples"]
    assert samples[0]["reward"] == 1.0
    assert samples[1]["reward"] is None and samples[1]["rewards"] == {"verifier_math": 0.0, "python": None}
    assert "python: maybe returned None" in samples[1]["reward_reason"]
    assert samples[1]["details"]["python"] == {"reason": "maybe returned None"}


def test_combined_config_errors(reward_file):
    with pytest.raises(ValueError, match=r"rewards\.functions\[0\]\.type: unknown reward type 'bleu'; "
                                         r"known: divide_conquer, dpo_implicit, judge, math_steps, "
                                         r"object_grounding, python"):
        CombinedReward([{"type": "bleu"}])
    with pytest.raises(ValueError, match=r"rewards\.functions\[0\]: unknown key 'metrik' \(did you mean 'metric'\?\)"):
        CombinedReward([{"type": "reference_caption", "metrik": "CIDEr"}])
    with pytest.raises(ValueError, match="used twice"):
        CombinedReward([{"type": "verifier_math"}, {"type": "verifier_math"}])
    with pytest.raises(ValueError, match="weight must be a finite number"):
        CombinedReward([{"type": "verifier_math", "weight": math.inf}])
    with pytest.raises(ValueError, match="empty"):
        CombinedReward([])


def test_judge_sends_an_inline_image_as_it_is(tmp_path):
    # A data URI passes pool validation (it is decoded and verified there); the judge must not
    # treat it as a file path.
    uri = "data:image/png;base64,iVBORw0KGgo="
    parts = judge_reward(endpoint="http://127.0.0.1:1", model="m")._image_parts({"id": "i", "images": [uri]})
    assert parts == [{"type": "image_url", "image_url": {"url": uri}}]


# --- short_answer -----------------------------------------------------------------------------

def test_short_answer_reads_answers_as_the_benchmarks_do():
    records = [
        # LLaVA's POPE rule: "Yes, there is." -> yes; "No." -> no; "NO" -> yes (not the word 'No').
        record("y1", ["Yes, there is.", "No.", "NO"], task="yes_no", answer="Yes"),
        # extract_choice: B; C; B (after "answer is"); none (a lower-case letter is not a choice).
        record("q1", ["B", "(C) dog", "I think the answer is B.", "b"], task="mcq", answer="b"),
        # VQA normalisation: "Two." -> 2; "2 dogs" stays; "two" -> 2.
        record("v1", ["Two.", "2 dogs", "two"], task="vqa", answer="2"),
        record("v2", ["x"], task="vqa", answer=None),
        record("y2", ["yes"], task="yes_no", answer="maybe"),
        record("c1", ["a dog"], task="caption"),
    ]
    scores = make_reward({"type": "short_answer"}).score(records)
    assert [v for v, _ in scores[0]] == [1.0, 0.0, 1.0]
    assert scores[0][1][1] == {"gold": "yes", "parsed": "no"}
    assert [v for v, _ in scores[1]] == [1.0, 0.0, 1.0, 0.0]
    assert scores[1][3][1] == {"gold": "B", "parsed": None}
    assert [v for v, _ in scores[2]] == [1.0, 0.0, 1.0]
    assert scores[2][0][1] == {"gold": "2", "parsed": "2"}
    assert scores[3][0][0] is None and "no gold answer" in scores[3][0][1]["reason"]
    assert scores[4][0][0] is None and "'maybe' is not a yes_no answer" in scores[4][0][1]["reason"]
    assert scores[5][0][0] is None and "does not apply to task 'caption'" in scores[5][0][1]["reason"]


def test_short_answer_match_option_and_combination():
    exact = make_reward({"type": "short_answer", "match": "exact"})
    assert [v for v, _ in exact.score([record("v", [" 2 ", "Two", "2."], task="vqa", answer="2")])[0]] == \
        [1.0, 0.0, 0.0]
    assert exact.provenance() == {"type": "short_answer", "tasks": ["yes_no", "mcq", "vqa"], "match": "exact"}
    # match: vqa on a yes/no question compares normalised text, so "Yes." is right and "Yes, it is" is not.
    vqa = make_reward({"type": "short_answer", "match": "vqa"})
    assert [v for v, _ in vqa.score([record("y", ["Yes.", "Yes, it is"], task="yes_no", answer="yes")])[0]] == \
        [1.0, 0.0]
    with pytest.raises(ValueError, match=r"rewards\.match: expected one of 'auto', 'exact', 'yes_no', 'choice', "
                                         r"'vqa', found 'fuzzy'"):
        make_reward({"type": "short_answer", "match": "fuzzy"})
    combined = CombinedReward([{"type": "verifier_math"}, {"type": "short_answer", "weight": 2.0}])
    out = combined.score_records([record("y", ["No"], task="yes_no", answer="no"), record("m", ["5"])])
    assert out[0]["samples"][0]["reward"] == 2.0 and out[0]["samples"][0]["rewards"] == {"short_answer": 1.0}
    assert out[1]["samples"][0]["rewards"] == {"verifier_math": 1.0}
