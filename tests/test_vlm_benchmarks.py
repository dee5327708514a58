"""Vision-language benchmark types on hand-made files in their public formats, against metrics
worked out by hand: POPE (yes_no), MMStar (multiple_choice), VQAv2 and TextVQA (vqa), CHAIR
(chair); per-benchmark prompt templates and sampling, checked with the config; and one
evaluation run of the tiny VLM as the evaluate rule runs it."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from juicebox.benchmarks import (BenchmarkError, load_benchmark, normalize_vqa_answer, options_from_question,
                                 parse_yes_no, rescore, vqa_accuracy)
from juicebox.objects import VocabularyError, read_synonyms
from juicebox.config import ConfigError, resolve
from juicebox.engines import Prompt, Sampling, make_engine
from juicebox.io import write_jsonl
from juicebox.records import prompt_messages

DATA = ROOT / "tests" / "data" / "benchmarks"
SHORT_ANSWER = "{prompt}\nAnswer the question using a single word or phrase."


@pytest.fixture(scope="module")
def image_root(shape_images) -> str:
    """The folder of red_circle.png, blue_square.png and green_triangle.png, the fixtures' images."""
    return str(Path(shape_images["red_circle"]).parent)


def bench(kind: str, file: str, image_root: str, **options):
    """The benchmark of type ``kind`` on ``tests/data/benchmarks/<file>``, as the evaluate rule builds it."""
    return load_benchmark(Path(file).stem, {"type": kind, "path": str(DATA / file), "image_root": image_root,
                                            **options})


# --- POPE -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed", [
    ("Yes, there is a circle in the image.", "yes"), ("No.", "no"), ("There is not a cat.", "no"),
    ("no, there is none", "no"), ("I do not see one. But yes", "no"), ("Yes. No doubt.", "yes"),
    ("NO", "yes"), ("no\n", "yes"), ("", "yes"), ("I see no dog", "no"), ("Nope", "yes"),
])
def test_parse_yes_no_is_llavas_rule(text, parsed):
    # LLaVA's eval_pope.py: first sentence, commas removed, split on ' ': 'No', 'not' or 'no' -> no.
    assert parse_yes_no(text) == parsed


# One answer per item: the gold label, LLaVA's reading of the answer, the confusion cell.
POPE_ANSWERS = {
    "1": ["Yes, there is a circle in the image."],  # yes / yes: TP  (adversarial)
    "2": ["No."],                                    # no  / no:  TN  (adversarial)
    "3": ["Yes"],                                    # no  / yes: FP  (adversarial)
    "4": ["There is not a square."],                 # yes / no:  FN  (adversarial)
    "5": ["yes"],                                    # yes / yes: TP  (random)
    "6": ["no, there is none"],                      # no  / no:  TN  (random)
    "7": ["I do not see one. But yes"],              # no  / no:  TN  (random)
    "8": ["NO"],                                     # no  / yes: FP  (random; 'NO' is not 'No')
}


def test_pope_figures_overall_and_per_category(image_root, tmp_path):
    pope = bench("yes_no", "pope.jsonl", image_root, prompt_template=SHORT_ANSWER)
    items = pope.load()
    assert [item["id"] for item in items] == [str(i) for i in range(1, 9)]
    assert items[0]["prompt"] == "Is there a circle in the image?\nAnswer the question using a single word or phrase."
    assert items[0]["gold"] == "yes" and items[0]["images"][0].endswith("red_circle.png")
    rows, metrics = pope.score(items, POPE_ANSWERS, seed=0)
    # Overall TP 2 (1, 5), FP 2 (3, 8), TN 3 (2, 6, 7), FN 1 (4) of 8 predictions.
    # accuracy (2 + 3) / 8; precision 2 / (2 + 2); recall 2 / (2 + 1); f1 2·(1/2)·(2/3) / (1/2 + 2/3) = 4/7;
    # yes_ratio_pred (2 + 2) / 8.
    expected = {"accuracy": 5 / 8, "precision": 1 / 2, "recall": 2 / 3, "f1": 4 / 7, "yes_ratio_pred": 1 / 2,
                # adversarial (1-4): TP 1, FP 1, TN 1, FN 1: every figure 1/2.
                **{f"{name}[category=adversarial]": 1 / 2 for name in
                   ("accuracy", "precision", "recall", "f1", "yes_ratio_pred")},
                # random (5-8): TP 1, FP 1, TN 2, FN 0: accuracy 3/4, precision 1/2, recall 1/1,
                # f1 2·(1/2)·1 / (3/2) = 2/3, yes ratio 2/4.
                "accuracy[category=random]": 3 / 4, "precision[category=random]": 1 / 2,
                "recall[category=random]": 1.0, "f1[category=random]": 2 / 3, "yes_ratio_pred[category=random]": 1 / 2}
    assert metrics["metrics"] == pytest.approx(expected)
    assert set(metrics["ci95"]) == set(expected)
    for name, (lo, hi) in metrics["ci95"].items():
        assert lo <= metrics["metrics"][name] <= hi, name
    assert metrics["lower_is_better"] == [] and json.loads(json.dumps(metrics)) == metrics
    assert rows[3]["score"] == {"parsed": ["no"], "correct": [False], "accuracy": 0.0, "tp": 0, "fp": 0, "tn": 0,
                                "fn": 1}
    assert rows[0]["groups"] == {"category": "adversarial"}
    # The rows alone give the same figures.
    rows_path = tmp_path / "eval" / "pope" / "base.jsonl"
    write_jsonl(rows_path, rows)
    again = rescore(str(rows_path), {"type": "yes_no"}, seed=0)
    assert again["metrics"] == metrics["metrics"] and again["ci95"] == metrics["ci95"]


def test_pope_every_sample_is_a_prediction(image_root):
    pope = bench("yes_no", "pope.jsonl", image_root, limit=2, group_by=[])
    items = pope.load()
    # Item 1 (yes): yes, no, yes -> TP 2, FN 1; item 2 (no): yes -> FP 1. Four predictions.
    _, metrics = pope.score(items, {"1": ["Yes.", "No.", "yes"], "2": ["Yes"]}, seed=0)
    assert metrics["metrics"] == pytest.approx({"accuracy": 2 / 4, "precision": 2 / 3, "recall": 2 / 3,
                                                "f1": 2 / 3, "yes_ratio_pred": 3 / 4})
    assert metrics["samples_per_item"] == {"min": 1, "max": 3}


def test_pope_hugging_face_layout_and_bad_label(tmp_path, image_root):
    path = tmp_path / "pope_hf.jsonl"
    write_jsonl(path, [{"id": "a", "question": "Is there a cat?", "answer": "No", "image": "red_circle.png"},
                       {"id": "b", "question": "Is there a dog?", "answer": "maybe", "image": "red_circle.png"}])
    pope = load_benchmark("p", {"type": "yes_no", "path": str(path), "image_root": image_root, "limit": 1})
    assert pope.load()[0]["gold"] == "no"
    with pytest.raises(BenchmarkError, match=r"pope_hf\.jsonl:2: label must be 'yes' or 'no', found 'maybe'"):
        load_benchmark("p", {"type": "yes_no", "path": str(path), "image_root": image_root}).load()


# --- MMStar -----------------------------------------------------------------------------------

@pytest.mark.parametrize("question, options", [
    ("Colour?\nOptions: A: red, B: blue, C: green", {"A": "red", "B": "blue", "C": "green"}),
    ("Where?\nOptions: A: The bag is on the book., B: The bag is under it.",
     {"A": "The bag is on the book.", "B": "The bag is under it."}),
    ("Pick one.\n(A) cat\n(B) dog\nAnswer with the letter.", {"A": "cat", "B": "dog"}),
    ("Plan A. Which plan?\nA. first one\nB. second one\nC. third one", {"A": "first one", "B": "second one",
                                                                        "C": "third one"}),
    ("Is A: the only one?", {}),
    ("What is shown?", {}),
])
def test_options_from_question(question, options):
    assert options_from_question(question) == options


MMSTAR_ANSWERS = {
    "0": ["A"],                 # gold A: right    coarse perception / image scene and topic
    "1": ["C"],                 # gold B: wrong    coarse perception / image style & quality
    "2": ["(C) green"],         # gold C: right    fine-grained perception / attribute recognition
    "3": ["The answer is D."],  # gold D: right    fine-grained perception / attribute recognition
    "4": ["6"],                 # gold B: no letter, wrong   math / numeric commonsense and calculation
    "5": ["A", "B"],            # gold A: 1 of 2 right       math / numeric commonsense and calculation
}


def test_mmstar_options_in_the_question_and_accuracy_per_category(image_root, tmp_path):
    mmstar = bench("multiple_choice", "mmstar.jsonl", image_root, fields={"id": "index"})
    items = mmstar.load()
    # The prompt is MMStar's question as given; the options are read from it.
    assert items[0]["prompt"].endswith("Options: A: a red circle on white, B: a blue square on black, C: a green "
                                       "star, D: an empty page")
    assert items[3]["meta"]["options"]["A"] == "The suitcase is on the book."
    assert items[3]["meta"]["category"] == "fine-grained perception" and items[3]["gold"] == "D"
    rows, metrics = mmstar.score(items, MMSTAR_ANSWERS, seed=0)
    # Per-item accuracies 1, 0, 1, 1, 0, 1/2.
    assert metrics["metrics"] == pytest.approx({
        "accuracy": (1 + 0 + 1 + 1 + 0 + 0.5) / 6,
        "accuracy[category=coarse perception]": (1 + 0) / 2,
        "accuracy[category=fine-grained perception]": (1 + 1) / 2,
        "accuracy[category=math]": (0 + 0.5) / 2,
        "accuracy[l2_category=attribute recognition]": (1 + 1) / 2,
        "accuracy[l2_category=image scene and topic]": 1.0,
        "accuracy[l2_category=image style & quality]": 0.0,
        "accuracy[l2_category=numeric commonsense and calculation]": (0 + 0.5) / 2,
    })
    assert list(metrics["metrics"])[:4] == ["accuracy", "accuracy[category=coarse perception]",
                                            "accuracy[category=fine-grained perception]", "accuracy[category=math]"]
    assert set(metrics["ci95"]) == set(metrics["metrics"])
    assert metrics["ci95"]["accuracy[category=fine-grained perception]"] == [1.0, 1.0]
    rows_path = tmp_path / "eval" / "mmstar" / "base.jsonl"
    write_jsonl(rows_path, rows)
    again = rescore(str(rows_path), {"type": "multiple_choice"}, seed=0)
    assert again["metrics"] == metrics["metrics"] and again["ci95"] == metrics["ci95"]


def test_mmstar_question_without_options_names_the_line(tmp_path):
    path = tmp_path / "mm.jsonl"
    write_jsonl(path, [{"question": "Q?\nOptions: A: x, B: y", "answer": "A"},
                       {"question": "What colour is it?", "answer": "A"}])
    with pytest.raises(BenchmarkError, match=r"mm\.jsonl:2: no options: the record has no 'options' field"):
        load_benchmark("mm", {"type": "multiple_choice", "path": str(path)}).load()


# --- VQAv2 and TextVQA ------------------------------------------------------------------------

@pytest.mark.parametrize("text, normalized", [
    ("Two dogs.", "2 dogs"), ("A cat!", "cat"), ("dont", "don't"), ("1,000", "1000"), ("3.5", "3.5"),
    ("yes.", "yes"), (" the  Red\tball\n", "red ball"), ("coca-cola", "coca cola"), ("Coca - Cola", "coca cola"),
    ("none", "0"),
])
def test_normalize_vqa_answer_as_vqa_eval(text, normalized):
    assert normalize_vqa_answer(text) == normalized


@pytest.mark.parametrize("matches, accuracy", [
    # m of 10 answers match: leaving out a matching one leaves m - 1, another one m; each subset scores
    # min(1, matches / 3); the mean over the 10 subsets is (m·min(1, (m-1)/3) + (10-m)·min(1, m/3)) / 10.
    (0, 0.0),
    (1, (1 * 0 + 9 * (1 / 3)) / 10),          # 0.3
    (2, (2 * (1 / 3) + 8 * (2 / 3)) / 10),    # 0.6
    (3, (3 * (2 / 3) + 7 * 1) / 10),          # 0.9
    (4, (4 * 1 + 6 * 1) / 10),                # 1.0
    (10, 1.0),
])
def test_vqa_accuracy_over_leave_one_out_subsets(matches, accuracy):
    answers = ["red"] * matches + ["blue"] * (10 - matches)
    assert vqa_accuracy("Red.", answers) == pytest.approx(accuracy)


def test_vqav2_answer_objects_and_accuracy_per_answer_type(image_root):
    vqa = bench("vqa", "vqav2.json", image_root, group_by=["answer_type"], prompt_template=SHORT_ANSWER)
    items = vqa.load()
    assert [item["id"] for item in items] == ["1", "2", "3", "4", "5"]
    assert items[1]["gold"] == ["red", "red"] + ["orange"] * 8
    assert items[0]["prompt"] == "How many shapes are there?\nAnswer the question using a single word or phrase."
    rows, metrics = vqa.score(items, {
        "1": ["Two."],      # 9 of 10 answers are 2 ("two" included): 1.0
        "2": ["Red"],       # 2 match: 0.6
        "3": ["blue"],      # 1 matches: 0.3
        "4": ["A square."], # "square": "the square", "square", "Square" match, 3: 0.9
        "5": ["no"],        # 0 match: 0
    }, seed=0)
    assert [row["score"]["accuracy"] for row in rows] == pytest.approx([1.0, 0.6, 0.3, 0.9, 0.0])
    assert rows[3]["score"]["normalized"] == ["square"]
    assert metrics["metrics"] == pytest.approx({"accuracy": (1.0 + 0.6 + 0.3 + 0.9 + 0.0) / 5,
                                                "accuracy[answer_type=number]": 1.0,
                                                "accuracy[answer_type=other]": (0.6 + 0.3 + 0.9) / 3,
                                                "accuracy[answer_type=yes/no]": 0.0})


def test_textvqa_string_answers_and_mean_over_samples(image_root):
    vqa = bench("vqa", "textvqa.jsonl", image_root)
    items = vqa.load()
    _, metrics = vqa.score(items, {
        "34602": ["stop", "stop sign"],  # "stop" (STOP, stop): 4 match -> 1.0; "stop sign": 6 match -> 1.0
        "34603": ["Coca Cola"],          # "coca-cola" reads "coca cola": all 10 match -> 1.0
        "34604": ["Nike!", "Puma"],      # "nike": 1 matches -> 0.3; "puma": 0 -> 0; mean 0.15
    }, seed=0)
    assert metrics["metrics"] == pytest.approx({"accuracy": (1.0 + 1.0 + 0.15) / 3})
    assert metrics["samples_per_item"] == {"min": 1, "max": 2}


# --- CHAIR --------------------------------------------------------------------------------------

CHAIR_CAPTIONS = {
    # mentioned: person (man), dog (dogs), teddy bear (not bear: the longer name first); annotated dog, person
    # -> hallucinated teddy bear; covered person, dog.
    "c1": ["A man walks two dogs past a teddy bear.", "A cat."],
    # square (boxes -> box), circle (round shape); annotated square, circle -> none hallucinated, 2 covered.
    "c2": ["Two boxes and a round shape."],
    # cat (kitten), hot dog, horse (ponies -> pony); annotated cat -> hallucinated hot dog, horse; covered cat.
    "c3": ["A kitten sleeps next to a hot dog and some ponies."],
    # person (children, twice: counted once), circle (discs -> disc); annotated person (kid), circle (discs).
    "c4": ["Children play with discs. The children laugh."],
    # nothing mentioned; annotated bear.
    "c5": ["An empty field."],
}


def test_chair_metrics_by_hand(image_root, tmp_path):
    chair = bench("chair", "chair.jsonl", image_root, synonyms="synonyms.txt")
    items = chair.load()
    assert [item["gold"] for item in items] == [["dog", "person"], ["circle", "square"], ["cat"],
                                                ["circle", "person"], ["bear"]]
    assert items[2]["prompt"] == "What is in the picture?" and items[3]["meta"]["references"]
    rows, metrics = chair.score(items, CHAIR_CAPTIONS, seed=0)
    score = {row["id"]: row["score"] for row in rows}
    assert score["c1"] == {"mentioned": ["person", "dog", "teddy bear"], "hallucinated": ["teddy bear"],
                           "covered": ["person", "dog"], "CHAIR_s": 1.0}
    assert score["c3"]["hallucinated"] == ["hot dog", "horse"]
    assert score["c4"]["mentioned"] == ["person", "circle"] and score["c5"]["mentioned"] == []
    # Counts per caption (hallucinating?, hallucinated, mentioned, covered, annotated):
    # c1 (1, 1, 3, 2, 2), c2 (0, 0, 2, 2, 2), c3 (1, 2, 3, 1, 1), c4 (0, 0, 2, 2, 2), c5 (0, 0, 0, 0, 1).
    # CHAIR_s = 2/5; CHAIR_i = (1 + 2) / (3 + 2 + 3 + 2) = 3/10; recall = (2 + 2 + 1 + 2) / (2 + 2 + 1 + 2 + 1) = 7/8.
    assert metrics["metrics"] == pytest.approx({"CHAIR_s": 2 / 5, "CHAIR_i": 3 / 10, "recall": 7 / 8})
    assert metrics["lower_is_better"] == ["CHAIR_s", "CHAIR_i"]
    for name, (lo, hi) in metrics["ci95"].items():
        assert lo <= metrics["metrics"][name] <= hi, name
    assert metrics["benchmark"]["synonyms"] == str(DATA / "synonyms.txt")
    rows_path = tmp_path / "eval" / "chair" / "base.jsonl"
    write_jsonl(rows_path, rows)
    again = rescore(str(rows_path), {"type": "chair", "synonyms": str(DATA / "synonyms.txt")}, seed=0)
    assert again["metrics"] == metrics["metrics"] and again["ci95"] == metrics["ci95"]


def test_chair_unknown_object_and_synonym_conflicts_name_the_line(tmp_path, image_root):
    path = tmp_path / "chair.jsonl"
    write_jsonl(path, [{"prompt": "Describe.", "objects": ["dog"]}, {"prompt": "Describe.", "objects": ["unicorn"]}])
    (tmp_path / "synonyms.txt").write_text("dog, puppy\n\ncat, kitten, puppy\n")
    with pytest.raises(VocabularyError, match=r"synonyms\.txt:3: 'puppy' names 'cat' here and 'dog' on line 1"):
        read_synonyms(tmp_path / "synonyms.txt")
    (tmp_path / "synonyms.txt").write_text("dog, puppy\n")
    with pytest.raises(BenchmarkError, match=r"chair\.jsonl:2: objects \['unicorn'\] are in no line of the synonyms"):
        load_benchmark("ch", {"type": "chair", "path": str(path), "synonyms": "synonyms.txt"}).load()
    with pytest.raises(BenchmarkError, match=r"synonyms file not found: .*nowhere\.txt"):
        load_benchmark("ch", {"type": "chair", "path": str(path), "synonyms": "nowhere.txt"}).load()


# --- prompt templates and sampling ----------------------------------------------------------------

def test_prompt_template_keeps_other_braces_and_must_place_the_prompt(image_root):
    pope = bench("yes_no", "pope.jsonl", image_root, limit=1, prompt_template="Q: {prompt} {answer} {{x}}")
    assert pope.load()[0]["prompt"] == "Q: Is there a circle in the image? {answer} {{x}}"
    assert pope.describe()["prompt_template"] == "Q: {prompt} {answer} {{x}}"
    with pytest.raises(ConfigError, match=r"eval\.benchmarks\.pope: prompt_template: must contain \{prompt\}"):
        bench("yes_no", "pope.jsonl", image_root, prompt_template="Answer briefly.")


EVAL_SAMPLING = {"preset": "custom", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_tokens": 40}


@pytest.mark.parametrize("kind, own, effective", [
    # short-answer and caption types: greedy, one answer, with eval.sampling's max_tokens
    ("yes_no", None, {"max_tokens": 40, "n": 1, "temperature": 0.0}),
    ("caption", None, {"max_tokens": 40, "n": 1, "temperature": 0.0}),
    ("chair", None, {"max_tokens": 40, "n": 1, "temperature": 0.0}),
    # math: eval.sampling as it is
    ("math", None, EVAL_SAMPLING),
    # the benchmark's own keys over the type's default
    ("vqa", {"n": 3, "temperature": 0.5}, {"max_tokens": 40, "n": 3, "temperature": 0.5}),
    ("multiple_choice", {"max_tokens": 8}, {"max_tokens": 8, "n": 1, "temperature": 0.0}),
    ("math", {"n": 8}, {**EVAL_SAMPLING, "n": 8}),
    # a preset replaces the decoding values below it; n and max_tokens carry on
    ("math", {"preset": "qwen_think"}, {"n": 4, "max_tokens": 40, "preset": "qwen_think"}),
    ("caption", {"preset": "greedy", "top_k": 5}, {"n": 1, "max_tokens": 40, "preset": "greedy", "top_k": 5}),
])
def test_effective_sampling(kind, own, effective):
    options = {"type": kind, "path": "unused.jsonl", **({"sampling": own} if own is not None else {})}
    if kind == "chair":
        options["synonyms"] = "synonyms.txt"
    assert load_benchmark("b", options).effective_sampling(EVAL_SAMPLING) == effective


def test_a_preset_of_the_benchmark_is_not_overridden_by_eval_sampling():
    sampling = load_benchmark("m", {"type": "math", "path": "x.jsonl", "sampling": {"preset": "qwen_think"}})
    drawn = Sampling.from_config(sampling.effective_sampling(EVAL_SAMPLING), seed=0)
    assert (drawn.temperature, drawn.top_p, drawn.top_k, drawn.n) == (1.0, 0.95, 20, 4)


def demo_config(benchmarks: dict, engine: dict | None = None) -> dict:
    """The repository's config with one experiment, ``mine``, evaluated on ``benchmarks``."""
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["experiments"] = {"mine": {"eval": {"benchmarks": benchmarks, **({"engine": engine} if engine else {})}}}
    cfg["ranking"] = {"benchmark": next(iter(benchmarks)), "metric": "accuracy"}
    return cfg


def resolved(cfg: dict) -> dict:
    return resolve(copy.deepcopy(cfg), str(ROOT / "config" / "config.schema.yaml"), produced=lambda path: True)


POPE_BLOCK = {"type": "yes_no", "path": "data/pope.jsonl", "prompt_template": SHORT_ANSWER}


def test_config_spells_out_the_benchmark_sampling():
    mine = resolved(demo_config({"pope": {**POPE_BLOCK, "sampling": {"n": 2, "temperature": "0.5"}}}))
    block = mine["experiments"]["mine"]["eval"]["benchmarks"]["pope"]
    assert block["sampling"] == {"preset": None, "n": 2, "temperature": 0.5, "top_p": None, "top_k": None,
                                 "repetition_penalty": None, "presence_penalty": None, "frequency_penalty": None,
                                 "max_tokens": None}
    assert block["prompt_template"] == SHORT_ANSWER and block["group_by"] == ["category"]
    # The spelt-out block builds the same benchmark again (as the evaluate job does).
    again = load_benchmark("pope", block)
    assert again.effective_sampling(mine["experiments"]["mine"]["eval"]["sampling"]) == {
        "max_tokens": mine["experiments"]["mine"]["eval"]["sampling"]["max_tokens"], "n": 2, "temperature": 0.5}


@pytest.mark.parametrize("sampling, engine, message", [
    ({"temprature": 0.5}, None,
     r"experiments\.mine\.eval\.benchmarks\.pope\.sampling: unknown key 'temprature' \(did you mean "
     r"'temperature'\?\)"),
    ({"n": "four"}, None,
     r"experiments\.mine\.eval\.benchmarks\.pope\.sampling\.n: expected integer or null, found 'four' \(str\)"),
    ({"top_p": 0}, None,
     r"experiments\.mine\.eval\.benchmarks\.pope\.sampling\.top_p: expected a number > 0, found 0"),
    ({"preset": "greddy"}, None,
     r"experiments\.mine\.eval\.benchmarks\.pope\.sampling\.preset: expected 'custom', 'greedy', .* or null, "
     r"found 'greddy'"),
    # the eval engine must honour the benchmark's sampling: a transformers server has no presence penalty
    ({"preset": "qwen_ins"}, {"type": "openai", "launch": {"kind": "transformers"}},
     r"experiments\.mine\.eval\.benchmarks\.pope\.sampling: .*presence_penalty=1\.5"),
])
def test_bad_benchmark_sampling_names_its_dotted_path(sampling, engine, message):
    with pytest.raises(ConfigError, match=message):
        resolved(demo_config({"pope": {**POPE_BLOCK, "sampling": sampling}}, engine))


def test_config_refuses_a_field_the_type_does_not_read():
    with pytest.raises(ConfigError, match=r"experiments\.mine\.eval\.benchmarks\.pope: benchmark 'pope': unknown "
                                          r"fields \['answers'\]"):
        resolved(demo_config({"pope": {**POPE_BLOCK, "fields": {"answers": "label"}}}))


# --- one evaluation, as the evaluate rule runs it ---------------------------------------------------

@pytest.mark.train
def test_tiny_vlm_evaluated_on_pope_greedy_with_the_template(tiny_vlm, image_root):
    pope = bench("yes_no", "pope.jsonl", image_root, limit=4, prompt_template=SHORT_ANSWER)
    items = pope.load()
    sampling = Sampling.from_config(pope.effective_sampling(EVAL_SAMPLING | {"max_tokens": 4}), seed=0)
    assert (sampling.n, sampling.temperature, sampling.max_tokens) == (1, 0.0, 4)
    predictions, prompts = {}, {}
    engine = make_engine({"type": "hf", "batch_size": 4, "device": "cpu"}, tiny_vlm, None, sampling, threads=1)
    try:
        engine.run([Prompt(item["id"], prompt_messages(item["prompt"]), item["images"]) for item in items],
                   lambda prompt, samples: (predictions.__setitem__(prompt.id, [s["text"] for s in samples]),
                                            prompts.__setitem__(prompt.id, prompt)))
    finally:
        engine.close()
    assert prompts["1"].messages[-1]["content"].endswith("Answer the question using a single word or phrase.")
    assert prompts["1"].images == items[0]["images"]
    rows, metrics = pope.score(items, predictions, seed=0)
    assert all(len(row["predictions"]) == 1 for row in rows)
    assert set(metrics["metrics"]) >= {"accuracy", "f1", "accuracy[category=adversarial]"}
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
