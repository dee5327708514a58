"""Scoring primitives and benchmark types against hand-computed values, on real files.

math-verify and pycocoevalcap run for real (Java included); the caption metrics are computed
once per module because each run starts two JVMs.
"""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from juicebox.benchmarks import BENCHMARKS, BenchmarkError, extract_choice, load_benchmark, rescore
from juicebox.io import write_json, write_jsonl
from conftest import shape_image
from juicebox.scoring import (CAPTION_METRICS, bootstrap_figures, caption_scores, figure_values, gold_answer_math,
                              math_correct, mean_figures, paired_bootstrap_figures,
                              pass_at_k)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


# --- gold answers and math-verify ----------------------------------------------------------

@pytest.mark.parametrize("text, gold", [
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("So it costs 1,000 dollars.\n#### 1,000", "1000"),
    ("He loses 5.\n#### -5", "-5"),
    ("#### $1,234.5", "1234.5"),
    ("Final.\n#### 72.", "72"),
])
def test_gold_answer_gsm8k(text, gold):
    assert gold_answer_math(text) == gold


def test_gold_answer_math_takes_last_boxed_with_nested_braces():
    solution = r"First \boxed{3}, then in the end $\boxed{\frac{1}{\sqrt{2}}}$."
    assert gold_answer_math(solution) == r"\frac{1}{\sqrt{2}}"
    assert gold_answer_math(r"\boxed{\{1, 2\}} or \fbox{x^{2}}") == "x^{2}"
    assert gold_answer_math("  42 \n") == "42"


def test_math_correct_equal_forms():
    assert math_correct("0.5", "1/2")
    assert math_correct(r"The answer is $\boxed{\frac{1}{2}}$.", "0.5")
    assert math_correct(r"So \boxed{\frac12}", r"\frac{1}{2}")
    assert math_correct("In total 1,000 apples.", "1000")
    assert math_correct("72", "48 + 24 = 72\n#### 72")        # a whole gold solution is reduced first
    assert not math_correct("The answer is 3.", "1/2")


@pytest.mark.parametrize("garbage", ["", "   ", "I don't know", r"}}}{{\boxed{", r"\frac{", "x" * 5000, None, 42])
def test_math_correct_garbage_is_false(garbage):
    assert math_correct(garbage, "72") is False


def test_gsm8k_style_prediction_is_judged_on_its_final_line():
    assert math_correct("#### 7", "7")
    # The last number of the text is 3; the '####' line says 7.
    assert math_correct("4 + 3 = 7\n#### 7\nHope these 3 steps help.", "7")
    assert not math_correct("#### 8\nbecause 7 was wrong", "7")


def test_math_correct_works_outside_the_main_thread():
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(math_correct, ["#### 72", "0.5", "nope"], ["72", "1/2", "1"]))
    assert threading.current_thread() is threading.main_thread()
    assert results == [True, True, False]


# --- estimators --------------------------------------------------------------------------

def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 1) == pytest.approx(2 / 5)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)      # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)       # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0                            # fewer than k wrong samples
    assert pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def means(values):
    return [{"items": 1, "acc": v} for v in values]


def test_bootstrap_of_a_mean_is_seeded_and_contains_the_mean():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    ci = bootstrap_figures(means(values), mean_figures, seed=7)["acc"]
    assert ci == bootstrap_figures(means(values), mean_figures, seed=7)["acc"]
    assert ci[0] <= sum(values) / len(values) <= ci[1]
    assert ci[0] < ci[1]
    # 1/3 per item: every resample's mean is 1/3 up to rounding, and the interval is exactly the figure.
    point = figure_values(means([1 / 3] * 7), mean_figures)["acc"]
    assert bootstrap_figures(means([1 / 3] * 7), mean_figures, seed=1)["acc"] == (point, point)
    # Two items: resample means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4 -> the 95% interval is [0, 1].
    assert bootstrap_figures(means([0.0, 1.0]), mean_figures, seed=3, n_resamples=4000)["acc"] == (0.0, 1.0)


def test_the_bootstrap_recomputes_a_ratio_of_sums_not_a_mean_of_ratios():
    # Hallucinated / mentioned objects: one caption names 9 objects, all wrong; nine name 1, all right.
    stats = [{"items": 1, "bad": 9, "named": 9}] + [{"items": 1, "bad": 0, "named": 1}] * 9

    def share(t):
        return {"share": t["bad"] / t["named"]}

    assert figure_values(stats, share)["share"] == 0.5  # the mean of per-caption shares would be 0.1
    low, high = bootstrap_figures(stats, share, seed=5, n_resamples=2000)["share"]
    assert low <= 0.5 <= high and high > 0.1


def test_paired_bootstrap_resamples_the_same_items_on_both_sides():
    a, b = means([1, 1, 0, 1, 0, 1, 1, 1]), means([0, 1, 0, 1, 0, 1, 0, 1])
    low, high = paired_bootstrap_figures(a, b, mean_figures, seed=2, n_resamples=2000)["acc"]
    assert low <= 0.25 <= high and low >= 0  # a is never worse than b on an item: no resample goes below 0
    assert paired_bootstrap_figures(a, a, mean_figures, seed=2)["acc"] == (0.0, 0.0)


def bench(kind, name, **options):
    """The benchmark ``name`` of type ``kind`` built from its options, as the evaluate rule builds it."""
    return load_benchmark(name, {"type": kind, **options})


# --- math benchmark ----------------------------------------------------------------------

def test_load_gsm8k_with_missing_ids_and_limit(tmp_path):
    path = write_lines(tmp_path / "gsm8k.jsonl", [
        json.dumps({"id": "g1", "question": "What is 70 + 2?", "answer": "70 + 2 = 72\n#### 72"}),
        "",
        json.dumps({"question": "How many?", "answer": "It is 1,000.\n#### 1,000", "level": 2}),
        json.dumps({"question": "Third?", "answer": "#### 3"}),
    ])
    items = load_benchmark("gsm", {"type": "math", "path": path}).load()
    assert [i["id"] for i in items] == ["g1", "gsm-3", "gsm-4"]
    assert [i["gold"] for i in items] == ["72", "1000", "3"]
    assert items[0]["prompt"] == "What is 70 + 2?"
    assert items[1]["meta"] == {"format": "gsm8k", "level": 2}
    assert len(bench("math", "gsm", path=path, limit=2).load()) == 2


def test_load_math_json_array_auto_detected(tmp_path):
    path = tmp_path / "math.json"
    write_json(path, [
        {"problem": "Half of one?", "solution": r"It is $\boxed{\frac{1}{2}}$."},
        {"unique_id": "x7", "problem": "Nested?", "solution": r"$\boxed{\sqrt{\frac{1}{4}}}$"},
        {"problem": "MATH-500 style", "solution": r"\boxed{wrong}", "answer": "5"},
    ])
    items = bench("math", "m", path=str(path), fields={"id": "unique_id"}).load()
    assert [i["gold"] for i in items] == [r"\frac{1}{2}", r"\sqrt{\frac{1}{4}}", "5"]
    assert items[1]["id"] == "x7" and items[0]["meta"]["format"] == "math"


@pytest.mark.parametrize("bad_line, message", [
    ('{"question": "Broken", "answer": ', "not valid JSON|unparseable JSON"),
    (json.dumps({"question": "No final line", "answer": "72"}), "####"),
    (json.dumps({"question": "", "answer": "#### 1"}), "non-empty"),
])
def test_bad_math_line_names_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps({"question": "Fine?", "answer": "#### 1"}), bad_line])
    with pytest.raises(BenchmarkError, match=rf"bad\.jsonl:2: .*({message})"):
        bench("math", "bad", path=path).load()


def test_unknown_type_lists_known_types():
    with pytest.raises(ValueError, match=r"eval\.benchmarks\.x\.type: unknown benchmark type 'maths' \(did you mean "
                                         r"'math'\?\); known: caption, chair, math, multiple_choice, vqa, yes_no"):
        load_benchmark("x", {"type": "maths", "path": "x.jsonl"})
    assert set(BENCHMARKS) == {"math", "caption", "chair", "multiple_choice", "vqa", "yes_no"}


def test_math_score_pass_at_k_and_rescore(tmp_path):
    path = tmp_path / "mix.jsonl"
    write_jsonl(path, [{"id": "a", "question": "70 + 2?", "answer": "#### 72"},
                       {"id": "b", "question": "Half?", "answer": "#### 0.5"}])
    bench = load_benchmark("mathbench", {"type": "math", "path": str(path), "k": [2, 4, 8]})
    items = bench.load()
    predictions = {"a": ["#### 72", "It is 72.", "70", "no idea"],          # 2 of 4 right
                   "b": [r"\boxed{\frac{1}{2}}", "1", "2", "three"]}       # 1 of 4 right
    rows, metrics = bench.score(items, predictions, seed=0)
    assert rows[0]["score"]["correct"] == [True, True, False, False]
    assert rows[1]["score"]["correct"] == [True, False, False, False]
    # a: pass@2 = 1 - C(2,2)/C(4,2) = 5/6; b: pass@2 = 1 - C(3,2)/C(4,2) = 1/2. k=8 > 4 samples is skipped.
    assert metrics["n"] == 2
    assert metrics["metrics"] == pytest.approx({"pass@1": (0.5 + 0.25) / 2, "pass@2": (5 / 6 + 1 / 2) / 2,
                                                "pass@4": 1.0})
    lo, hi = metrics["ci95"]["pass@1"]
    assert lo <= 0.375 <= hi and metrics["ci95"]["pass@4"] == [1.0, 1.0]
    assert {"id", "prompt", "predictions", "gold", "score"} <= set(rows[0])

    rows_path = tmp_path / "eval" / "mathbench" / "baseline.jsonl"
    write_jsonl(rows_path, rows)
    again = rescore(str(rows_path), {"type": "math", "k": [2, 4, 8]}, seed=0)
    assert again["metrics"] == metrics["metrics"] and again["ci95"] == metrics["ci95"]


def test_math_score_requires_predictions_for_every_item(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [json.dumps({"id": "a", "question": "q", "answer": "#### 1"})])
    math = bench("math", "g", path=path)
    with pytest.raises(BenchmarkError, match="no predictions"):
        math.score(math.load(), {}, seed=0)


# --- multiple choice ---------------------------------------------------------------------

@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("(C) because it is blue", "C"), ("D.", "D"), ("**A**", "A"), ("B\nBecause...", "B"),
    ("I think the answer is D.", "D"), ("Answer: (B)", "B"), ("The answer is **C**", "C"),
    ("A cat is on the mat", None), ("answer: c", None), ("", None), ("No idea", None),
])
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


def test_multiple_choice_load_and_accuracy(tmp_path):
    path = write_lines(tmp_path / "mc.jsonl", [
        json.dumps({"id": "q1", "question": "Sky colour?", "options": ["red", "blue"], "answer": "B"}),
        json.dumps({"id": "q2", "question": "2 + 2?", "options": {"b": "5", "a": "4", "c": "3"}, "answer": "a"}),
    ])
    bench = load_benchmark("mc", {"type": "multiple_choice", "path": path})
    items = bench.load()
    assert items[0]["prompt"] == "Sky colour?\n\nA. red\nB. blue\n\nAnswer with the letter."
    assert items[1]["gold"] == "A" and list(items[1]["meta"]["options"]) == ["A", "B", "C"]
    rows, metrics = bench.score(items, {"q1": ["B", "A"], "q2": ["Answer: A", "A.", "C", "x"]}, seed=1)
    assert rows[0]["score"]["choices"] == ["B", "A"]
    assert metrics["metrics"]["accuracy"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    rows_path = tmp_path / "eval" / "mc" / "v.jsonl"
    write_jsonl(rows_path, rows)
    assert rescore(str(rows_path), {"type": "multiple_choice"}, seed=1)["metrics"] == metrics["metrics"]


def test_multiple_choice_bad_answer_names_line(tmp_path):
    path = write_lines(tmp_path / "mc.jsonl", [
        json.dumps({"question": "Q?", "options": ["x", "y"], "answer": "A"}),
        json.dumps({"question": "Q?", "options": ["x", "y"], "answer": "E"}),
    ])
    with pytest.raises(BenchmarkError, match=r"mc\.jsonl:2: answer must be one of the option letters A, B"):
        bench("multiple_choice", "mc", path=path).load()


# --- captions (one pycocoevalcap run for the module) -------------------------------------

CAPTION_PREDICTIONS = {
    "same": ["A red circle to the left of a blue square.", "ignored second sample"],
    "disjoint": ["Two dogs play outside."],
    "empty": [""],
    "punct": ["..."],
}


@pytest.fixture(scope="module")
def scored_captions(tmp_path_factory):
    root = tmp_path_factory.mktemp("captions")
    (root / "images").mkdir()
    shape_image(root / "images" / "a.png")
    records = [
        {"id": "same", "image": "images/a.png", "prompt": "Describe.",
         "references": ["A red circle to the left of a blue square.", "A circle and a square."]},
        {"id": "disjoint", "question": "Describe.", "references": ["A green triangle above a yellow star."]},
        {"id": "empty", "prompt": "Describe.", "captions": [{"caption": "A blue square."}, {"caption": "A square."}]},
        {"id": "punct", "prompt": "Describe.", "references": ["A small red circle."]},
    ]
    path = root / "caption_test.json"
    write_json(path, records)
    bench = load_benchmark("cap", {"type": "caption", "path": str(path)})
    items = bench.load()
    rows, metrics = bench.score(items, CAPTION_PREDICTIONS, seed=0)
    return items, rows, metrics


def test_caption_items_read_aliases_and_images(scored_captions):
    items, _, _ = scored_captions
    assert items[0]["images"][0].endswith("images/a.png")
    assert items[1]["prompt"] == "Describe." and items[1]["images"] == []
    assert items[2]["gold"] == ["A blue square.", "A square."]


def test_caption_identical_and_disjoint_predictions(scored_captions):
    _, rows, metrics = scored_captions
    score = {row["id"]: row["score"] for row in rows}
    assert score["same"]["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert score["same"]["METEOR"] == pytest.approx(1.0, abs=1e-6)
    assert score["same"]["ROUGE_L"] == pytest.approx(1.0)
    assert score["disjoint"]["BLEU-1"] == pytest.approx(0.0, abs=1e-6)
    assert score["disjoint"]["ROUGE_L"] == 0.0 and score["disjoint"]["CIDEr"] == 0.0


def test_caption_empty_predictions_score_zero_without_crashing(scored_captions):
    _, rows, _ = scored_captions
    score = {row["id"]: row["score"] for row in rows}
    for key in ("empty", "punct"):
        assert set(score[key]) == set(CAPTION_METRICS)
        assert score[key]["BLEU-1"] == pytest.approx(0.0, abs=1e-6) and score[key]["METEOR"] == 0.0


def test_caption_metrics_and_intervals(scored_captions):
    _, rows, metrics = scored_captions
    assert metrics["n"] == 4 and list(metrics["metrics"]) == list(CAPTION_METRICS)
    assert set(metrics["ci95"]) == set(CAPTION_METRICS)
    # ROUGE_L and CIDEr corpus scores are means of the per-item scores.
    for name in ("ROUGE_L", "CIDEr"):
        mean = sum(row["score"][name] for row in rows) / len(rows)
        assert metrics["metrics"][name] == pytest.approx(mean)
        lo, hi = metrics["ci95"][name]
        assert lo <= mean <= hi
    assert metrics["samples_per_item"] == {"min": 1, "max": 2}


def test_no_java_process_left_behind(scored_captions):
    children = psutil.Process().children(recursive=True)
    assert not [p for p in children if "java" in p.name().lower()]


def test_caption_missing_image_names_line(tmp_path):
    path = tmp_path / "cap.jsonl"
    write_jsonl(path, [{"prompt": "p", "references": ["r"]}, {"prompt": "p", "references": ["r"], "image": "nope.png"}])
    with pytest.raises(BenchmarkError, match=r"cap\.jsonl:2: image not found"):
        bench("caption", "cap", path=str(path)).load()
    assert len(bench("caption", "cap", path=str(path), limit=1).load()) == 1


def test_caption_intervals_contain_their_corpus_figures(scored_captions):
    """Corpus BLEU and METEOR are not means of per-item values: each resample recomputes them."""
    _, _, metrics = scored_captions
    for name in CAPTION_METRICS:
        lo, hi = metrics["ci95"][name]
        assert lo <= metrics["metrics"][name] <= hi, name


# Stems (dog/dogs), synonyms (big/large), an exact match (whose chunk METEOR's sums leave out),
# a partial match in several chunks, an empty prediction.
METEOR_CASES = {
    "partial": ("a red circle on white", ["a red circle", "red round shape on a white background"]),
    "short": ("blue square", ["a blue square", "the square is blue"]),
    "exact": ("a green triangle", ["a green triangle"]),
    "stems": ("a dog runs on the grass", ["dogs running on grass", "a dog is running"]),
    "synonym": ("a big dog", ["a large dog", "the big dogs"]),
    "empty": ("", ["a cat"]),
    "exact2": ("two yellow stars", ["two yellow stars"]),
}


@pytest.mark.server  # pycocoevalcap's Java METEOR server, started for each of 4 subsets (30-60 s)
def test_corpus_meteor_and_bleu_recomputed_from_item_statistics_equal_pycocoevalcap():
    """caption_scores checks its recomputed figures against pycocoevalcap's on every call; here on
    every subset of items that changes which METEOR rule applies (pycocoevalcap's own corpus figure
    for each subset, Java included)."""
    from juicebox.scoring import caption_figures

    for keys in (["partial", "exact"], ["exact", "empty"], ["stems", "synonym", "exact2"], list(METEOR_CASES)):
        predictions = {key: METEOR_CASES[key][0] for key in keys}
        references = {key: METEOR_CASES[key][1] for key in keys}
        corpus, per_item, stats = caption_scores(predictions, references)
        recomputed = figure_values(list(stats.values()), caption_figures)
        for name in CAPTION_METRICS:
            assert recomputed[name] == pytest.approx(corpus[name], rel=1e-12, abs=1e-15), (keys, name)
        for key in keys:  # one item's statistics give its own segment METEOR
            assert figure_values([stats[key]], caption_figures)["METEOR"] == pytest.approx(per_item[key]["METEOR"])
    assert corpus["METEOR"] != pytest.approx(sum(s["METEOR"] for s in per_item.values()) / len(per_item))


def test_ranking_puts_the_lowest_first_for_a_lower_is_better_metric():
    from juicebox.summary import rank

    def entry(values, lower):  # a group of one replicate in eval.json's `replicates`
        return {"members": ["x"], "lower_is_better": {"chair": lower},
                "benchmarks": {"chair": {v: {"CHAIR_s": {"value": x, "ci95": [x, x], "points": [x]}}
                                         for v, x in values.items()}}}

    experiments = {"a": entry({"sft": 0.4, "dpo": 0.2, "sft_blank": 0.0}, ["CHAIR_s"]),
                   "b": entry({"sft": 0.3, "dpo": 0.5}, ["CHAIR_s"])}
    order = [(r["experiment"], r["variant"]) for r in rank(experiments, {"benchmark": "chair", "metric": "CHAIR_s"})]
    assert order == [("a", "dpo"), ("b", "sft"), ("a", "sft"), ("b", "dpo")]  # blank ablations are not ranked
    experiments = {"a": entry({"sft": 0.4, "dpo": 0.2}, [])}
    order = [r["variant"] for r in rank(experiments, {"benchmark": "chair", "metric": "CHAIR_s"})]
    assert order == ["sft", "dpo"]
