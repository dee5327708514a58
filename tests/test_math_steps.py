"""The worked-step reader (juicebox.arithmetic) and the ``math_steps`` reward on hand-made GSM8K-format
answers: each expected figure below was worked out by hand."""

from fractions import Fraction

import pytest

from juicebox.arithmetic import Unreadable, evaluate, steps
from juicebox.rewards import make_reward

# GSM8K's first training problem, its gold solution as published (calculator annotations, #### line).
GOLD = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
RIGHT = GOLD
# The final number is right, the first step's arithmetic is not (48/2 is 24), the second step is.
LUCKY = ("Natalia sold 48/2 = <<48/2=25>>25 clips in May.\n"
         "Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72")
# Every step true, but a step the gold solution does not take (48*2), and the final number wrong.
OTHER_PATH = "48*2 = <<48*2=96>>96 clips in May.\n48+96 = <<48+96=144>>144 clips.\n#### 144"
# Plain lines (the demo's format), no annotations: both steps true, the final is the last step.
LINES = "3 * 4 = 12.\n12 + 2 = 14.\n#### 14"
# Right final answer, no work shown.
BARE = "#### 72"
# A right last step but a final answer that is not its value.
MISMATCH = "48/2 = <<48/2=24>>24\n48+24 = <<48+24=72>>72\n#### 70"


def record(samples, answer=GOLD, rid="q1"):
    return {"id": rid, "task": "math", "prompt": "How many clips?", "answer": answer,
            "samples": [{"index": i, "text": text} for i, text in enumerate(samples)]}


def score(samples, answer=GOLD, **options):
    reward = make_reward({"type": "math_steps", **options})
    return reward.score([record(samples, answer)])[0]


def test_steps_are_read_from_annotations_else_lines():
    assert [(s.expression, s.stated, s.value) for s in steps(GOLD)] == [("48/2", 24, 24), ("48+24", 72, 72)]
    assert [(s.expression, s.true) for s in steps(LUCKY)] == [("48/2", False), ("48+24", True)]
    assert [(s.expression, s.true) for s in steps(LINES)] == [("3 * 4", True), ("12 + 2", True)]
    # a chain is a step per "=", each starting from the value before
    assert [(s.expression, int(s.stated)) for s in steps("2 + 3 = 5 + 1 = 6")] == [("2 + 3", 5), ("5 + 1", 6)]
    # sentences, lists, $ and thousands separators are not part of an expression
    assert [s.expression for s in steps("It is 5. Then 3 + 4 = 7, so $1,000 x 2 = $2,000")] == \
        ["3 + 4", "1,000 x 2"]
    assert [s.true for s in steps("It is 5. Then 3 + 4 = 7, so $1,000 x 2 = $2,000")] == [True, True]
    assert steps("x = 5 and no arithmetic here = 3") == [] and steps(BARE) == []


def test_rounded_stated_values_and_what_cannot_be_evaluated():
    assert [s.true for s in steps("10 / 3 = 3.33")] == [True]  # rounds to the stated decimals
    assert [s.true for s in steps("10 / 3 = 3.3")] == [True]
    assert [s.true for s in steps("10 / 3 = 3")] == [False]  # an integer is stated exactly
    (zero,) = steps("5 / 0 = 3")
    assert not zero.true and zero.reason == "division by zero"
    (power,) = steps("2**10 = 1024")  # not plain arithmetic: a false step, never a skipped one
    assert not power.true and "not plain arithmetic" in power.reason


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "(1).__class__", "open('x')", "[1] * 3",
                                  "lambda: 1", "1 if 1 else 2", "9" * 20 + " * 9"])
def test_evaluation_runs_no_text(text):
    with pytest.raises(Unreadable):
        evaluate(text)


def test_evaluation_is_exact():
    assert evaluate("0.1 + 0.2") == Fraction(3, 10) and evaluate("(3 + 4) × 2 ÷ 7") == 2 and evaluate("-2 - -3") == 1


def test_strict_rewards_only_right_work():
    values = [value for value, _ in score([RIGHT, LUCKY, OTHER_PATH, LINES, BARE, MISMATCH])]
    # RIGHT; LUCKY has a wrong step; OTHER_PATH a wrong final; LINES a wrong final (14 is not 72);
    # BARE shows no step; MISMATCH's final (70) is wrong and not its last step's value
    assert values == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_graded_is_the_share_of_right_steps_plus_final_correctness():
    values = [value for value, _ in score([RIGHT, LUCKY, OTHER_PATH, BARE], mode="graded", final_weight=0.5)]
    # RIGHT 0.5*2/2 + 0.5; LUCKY 0.5*1/2 + 0.5; OTHER_PATH 0.5*2/2 + 0; BARE 0 + 0.5
    assert values == [1.0, 0.75, 0.5, 0.5]


def test_gold_check_wants_the_gold_solutions_steps():
    strict = [value for value, _ in score([RIGHT, OTHER_PATH], against="gold")]
    graded = [value for value, _ in score([RIGHT, OTHER_PATH, LINES], against="gold", mode="graded",
                                          final_weight=0.0)]
    # OTHER_PATH: both steps true arithmetic, neither the gold's; LINES: 12 and 14, not 24 and 72
    assert strict == [1.0, 0.0] and graded == [1.0, 0.0, 0.0]
    _, details = score([OTHER_PATH], against="gold")[0]
    assert [s["reason"] for s in details["steps"]] == ["not the gold solution's step"] * 2


def test_details_name_every_step_and_the_final_answer():
    _, details = score([LUCKY])[0]
    assert details["steps"] == [{"expression": "48/2", "stated": 25, "value": 24, "true": False},
                                {"expression": "48+24", "stated": 72, "value": 72, "true": True}]
    assert (details["n_steps"], details["n_right"], details["all_steps_right"]) == (2, 1, False)
    assert details["final_correct"] and details["final_is_last_step"] and details["gold"] == "72"
    _, mismatch = score([MISMATCH])[0]
    assert not mismatch["final_correct"] and not mismatch["final_is_last_step"] and mismatch["all_steps_right"]


def test_records_without_gold_or_without_gold_steps_get_no_value():
    reward = make_reward({"type": "math_steps", "against": "gold"})
    no_gold, no_steps = reward.score([record([RIGHT], answer=None), record([RIGHT], answer="72", rid="q2")])
    assert no_gold[0][0] is None and "no gold answer" in no_gold[0][1]["reason"]
    assert no_steps[0][0] is None and "worked steps" in no_steps[0][1]["reason"]
    # the arithmetic check needs only the final answer from the gold
    assert make_reward({"type": "math_steps"}).score([record([RIGHT], answer="72")])[0][0][0] == 1.0


def test_the_math_benchmark_reports_the_share_of_answers_with_right_steps(tmp_path):
    import json

    from juicebox.benchmarks import load_benchmark

    path = tmp_path / "bench.jsonl"
    path.write_text(json.dumps({"id": "q1", "question": "How many clips?", "answer": GOLD}) + "\n"
                    + json.dumps({"id": "q2", "question": "3 * 4 + 2?", "answer": "#### 14"}) + "\n")
    bench = load_benchmark("m", {"type": "math", "path": str(path), "steps": True})
    # q1: right work; lucky (a wrong step, right final); no work at all. q2: right work; a wrong step
    rows, metrics = bench.score(bench.load(), {"q1": [RIGHT, LUCKY, BARE], "q2": [LINES, "3 * 4 = 13.\n#### 14"]},
                                seed=0)
    assert [row["score"]["steps_right"] for row in rows] == [[True, False, False], [True, False]]
    assert metrics["metrics"]["steps_right"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert metrics["metrics"]["pass@1"] == 1.0  # every final answer is right: pass@1 alone sees nothing wrong
    low, high = metrics["ci95"]["steps_right"]
    assert low <= metrics["metrics"]["steps_right"] <= high


def test_long_runs_of_digits_are_read_in_one_pass():
    # A regular expression over the whole answer took 100 s on this (cubic backtracking): the reader
    # scans leftwards from each "=" instead; the fast tier's 60 s limit catches a regression.
    assert steps("1 " * 2000) == [] and len(steps("1 + 2 = 3. " * 2000)) == 2000
    (long,) = steps("9" * 500 + " + 1 = 2")  # read back at most 200 characters; its number is too large
    assert len(long.expression) <= 200 and long.expression.endswith("9 + 1") and not long.true


def test_any_text_is_read_without_an_error():
    import random

    rng = random.Random(0)
    alphabet = "0123456789 +-*/=.,$()x\n\r<>#×÷e"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))) for _ in range(3000)]
    reward = make_reward({"type": "math_steps", "mode": "graded"})
    for text in texts:
        for step in steps(text):
            assert step.true in (True, False) and isinstance(step.to_dict(), dict)
    rows = reward.score([record(texts[:200])])[0]
    assert all(0.0 <= value <= 1.0 for value, _ in rows)
