"""DeepVision's re-judge (juicebox.rejudge): its prompt as published, how a reply is read, and the math
benchmark and the verifier_math reward re-judging what math-verify marks wrong, against a localhost
judge whose replies are hand-made."""

import json

import pytest
from aiohttp import web

from conftest import serve_chat_completions
from juicebox.benchmarks import load_benchmark
from juicebox.rejudge import JUDGE_PROMPT_TEMPLATE, parse_verdict
from juicebox.rewards import make_reward


def test_the_prompt_is_deepvisions_filled_by_format():
    text = JUDGE_PROMPT_TEMPLATE.format(question="Q?", gdt="1/2", box_answer="one half")
    assert text.startswith("You are a strict answer evaluator.\nYou will receive:\n1. A problem description.")
    assert "    * Expressions like 3/5, \\frac{3}{5}, 0.6 are considered equivalent.\n" in text
    assert 'You must reply with only one word: "Correct" or "Incorrect".\n' in text
    assert text.endswith("Question:\nQ?\nStandard Answer:\n1/2\nModel Answer:\none half\n")
    assert len(JUDGE_PROMPT_TEMPLATE.splitlines()) == 22  # upstream file: 23 lines, the last the closing quotes


@pytest.mark.parametrize("reply, verdict", [("Correct", True), ("correct.", True), ("**Correct**", True),
                                            ("Incorrect", False), ("INCORRECT - the value differs", False),
                                            ("It is correct", None), ("", None), ("Maybe", None)])
def test_a_reply_is_read_by_its_first_word(reply, verdict):
    assert parse_verdict(reply) is verdict


# The judge's replies by the answer it is shown (the text after "Model Answer:").
REPLIES = {"one half": "Correct", "half": "Correct.", "2": "Incorrect", "garbage": "I cannot tell"}


class Judge:
    def __init__(self):
        self.asked = []

    async def __call__(self, request):
        body = await request.json()
        prompt = body["messages"][0]["content"]
        answer = prompt.split("Model Answer:\n", 1)[1].strip()
        self.asked.append(answer)
        return web.json_response({"choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": REPLIES[answer]}}]})


@pytest.fixture
def judge():
    handler = Judge()
    with serve_chat_completions(handler) as url:
        yield url, handler


def test_the_math_benchmark_reports_verifier_and_rejudged_pass_at_1_with_the_flips(judge, tmp_path):
    url, handler = judge
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Half of {i}?", "answer": "#### 1/2"}) + "\n"
                            for i in range(3)))
    bench = load_benchmark("m", {"type": "math", "path": str(path), "rejudge": {"endpoint": url, "model": "judge"}})
    items = bench.load()
    # q0: right, right; q1: right, "one half" (math-verify: wrong; judge: correct); q2: "2", "garbage"
    predictions = {"q0": ["1/2", "0.5"], "q1": ["\\frac{1}{2}", "one half"], "q2": ["2", "garbage"]}
    rows, metrics = bench.score(items, predictions, seed=0)
    assert sorted(handler.asked) == ["2", "garbage", "one half"]  # only what math-verify marks wrong
    assert metrics["metrics"]["pass@1"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics["metrics"]["rejudged_pass@1"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["metrics"]["flipped"] == pytest.approx((0 + 0.5 + 0) / 3)
    for name in ("pass@1", "rejudged_pass@1", "flipped"):
        low, high = metrics["ci95"][name]
        assert low <= metrics["metrics"][name] <= high
    assert metrics["rejudge"] == {"judged": 3, "flipped": 1, "unparsed": 1,
                                  "judge": {"endpoint": url, "model": "judge"}}
    assert rows[1]["score"]["rejudged"] == [True, True]
    assert rows[1]["score"]["rejudge"] == [{"index": 1, "answer": "one half", "verdict": True, "reply": "Correct"}]
    assert rows[2]["score"]["rejudge"][1]["verdict"] is None  # "I cannot tell": unparsed, not flipped


def test_verifier_math_rejudges_its_zeros(judge):
    url, handler = judge
    reward = make_reward({"type": "verifier_math", "rejudge": {"endpoint": url, "model": "judge"}})
    record = {"id": "p", "task": "math", "prompt": "Half of 1?", "answer": "#### 1/2",
              "samples": [{"index": i, "text": t} for i, t in enumerate(["1/2", "half", "2"])]}
    (row,) = reward.score([record])
    assert [value for value, _ in row] == [1.0, 1.0, 0.0] and handler.asked == ["half", "2"]
    assert row[1][1]["rejudge"] == {"verdict": True, "reply": "Correct."} and "rejudge" not in row[0][1]


def test_a_template_that_does_not_fill_is_a_config_error():
    with pytest.raises(ValueError, match=r"template must use \{question\}"):
        make_reward({"type": "verifier_math", "rejudge": {"endpoint": "http://x", "model": "m",
                                                           "template": "{answer}"}})
