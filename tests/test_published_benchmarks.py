"""Benchmark files read as published, against metrics worked out by hand: TextVQA's JSON object
(records under ``data``, images by ``image_template``), VQAv2's questions and annotations files
joined on question_id, and VLMEvalKit's TSVs (MMStar/MMBench for multiple_choice, POPE for yes_no,
a VQA set for vqa) with base64 images decoded into the content-addressed image store; and the
errors each layout gives, naming the file and the line, item or question."""

import base64
import csv
import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, shape_image
from juicebox.benchmarks import BenchmarkError, load_benchmark
from juicebox.spec import ConfigError

DATA = ROOT / "tests" / "data" / "benchmarks"
SHAPES = {"red_circle": ("red", "circle"), "blue_square": ("blue", "square"), "green_triangle": ("green", "triangle")}


def centre_colour(path: str) -> tuple[int, int, int]:
    """The colour in the middle of a shape picture (its shape's colour)."""
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((image.width // 2, image.height // 2 + 4))


def is_colour(rgb: tuple[int, int, int], name: str) -> bool:
    """Near enough to a pure colour to survive JPEG."""
    want = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 128, 0)}[name]
    return all(abs(a - b) < 60 for a, b in zip(rgb, want))


@pytest.fixture
def pngs(tmp_path) -> dict[str, bytes]:
    """The bytes of the three shape PNGs."""
    return {name: shape_image(tmp_path / "png" / f"{name}.png", colour, shape).read_bytes()
            for name, (colour, shape) in SHAPES.items()}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def stored(store: Path, data: bytes) -> str:
    """Where the image store keeps these PNG bytes: the first 16 hex digits of their SHA-256."""
    return str(store / f"{hashlib.sha256(data).hexdigest()[:16]}.png")


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    """A TSV as VLMEvalKit writes it (pandas' to_csv with sep='\\t': minimal quoting, NaN as '')."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- TextVQA: one JSON object, records under "data" ------------------------------------------------

def test_textvqa_json_object_and_image_template(tmp_path):
    root = tmp_path / "textvqa"
    for image_id, (colour, shape) in zip(["003a8ae2ef43b901", "00685bc495504d61", "006d10667d17b924"],
                                         SHAPES.values()):
        shape_image(root / "train_images" / f"{image_id}.jpg", colour, shape)  # the val split's images
    textvqa = load_benchmark("textvqa", {"type": "vqa", "path": str(DATA / "TextVQA_0.5.1_val.json"),
                                         "image_root": str(root), "image_template": "train_images/{image_id}.jpg"})
    items = textvqa.load()
    assert [item["id"] for item in items] == ["34602", "34603", "34604"]
    assert items[1]["prompt"] == "what brand is the drink?"
    assert items[1]["gold"] == ["Coca-Cola", "coca cola"] + ["pepsi"] * 8
    assert items[0]["images"] == [str(root / "train_images" / "003a8ae2ef43b901.jpg")]
    assert [is_colour(centre_colour(item["images"][0]), colour) for item, colour in
            zip(items, ["red", "blue", "green"])] == [True, True, True]
    assert items[2]["meta"]["image_classes"] == ["Shirt"] and items[2]["meta"]["set_name"] == "val"
    _, metrics = textvqa.score(items, {
        "34602": ["Red."],       # "red": 1 of 10 answers -> 0.3
        "34603": ["coca cola"],  # "Coca-Cola" and "coca cola" read "coca cola": 2 -> 0.6
        "34604": ["seven"],      # "seven" reads "7": six 7s and two sevens, 8 -> 1.0
    }, seed=0)
    assert metrics["metrics"] == pytest.approx({"accuracy": (0.3 + 0.6 + 1.0) / 3})
    assert metrics["benchmark"]["image_template"] == "train_images/{image_id}.jpg"


def test_json_object_without_a_record_list_names_the_file(tmp_path):
    path = tmp_path / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps({"dataset_name": "textvqa", "dataset_version": "0.5.1", "data": {"question": "?"}}))
    with pytest.raises(BenchmarkError, match=r"TextVQA_0\.5\.1_val\.json: a JSON source must be an array of "
                                             r"objects, or an object holding them under 'data', 'questions', "
                                             r"'annotations'; found an object with keys dataset_name, "
                                             r"dataset_version, data"):
        load_benchmark("textvqa", {"type": "vqa", "path": str(path)}).load()


def test_image_template_fields_are_checked(tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"data": [{"question_id": 1, "question": "What?", "answers": ["a"] * 10,
                                          "image_id": "x"}]}))
    with pytest.raises(BenchmarkError, match=r"q\.json: item 1: image_template 'images/\{file_name\}' names field "
                                             r"'file_name', which the record lacks"):
        load_benchmark("q", {"type": "vqa", "path": str(path), "image_template": "images/{file_name}"}).load()
    with pytest.raises(BenchmarkError, match=r"q\.json: item 1: image_template .* does not fit the record "
                                             r"\(Unknown format code 'd'"):
        load_benchmark("q", {"type": "vqa", "path": str(path), "image_template": "{image_id:012d}.jpg"}).load()
    with pytest.raises(ConfigError, match=r"eval\.benchmarks\.q: image_template: must name the record's fields"):
        load_benchmark("q", {"type": "vqa", "path": str(path), "image_template": "images/{}.jpg"})


# --- VQAv2: questions and annotations, joined on question_id -----------------------------------------

VQAV2 = {"type": "vqa", "path": str(DATA / "v2_OpenEnded_mscoco_val2014_questions.json"),
         "annotations": "v2_mscoco_val2014_annotations.json", "group_by": ["answer_type"],
         "image_template": "val2014/COCO_val2014_{image_id:012d}.jpg"}


def test_vqav2_questions_joined_with_their_annotations(tmp_path):
    root = tmp_path / "coco"
    for image_id, (colour, shape) in zip([262148, 393225, 42], SHAPES.values()):
        shape_image(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg", colour, shape)
    vqav2 = load_benchmark("vqav2", {**VQAV2, "image_root": str(root)})
    items = vqav2.load()
    # In the questions' order; the annotations file lists them otherwise.
    assert [item["id"] for item in items] == ["262148000", "393225000", "42000"]
    assert items[0]["prompt"] == "What shape is this?" and items[0]["gold"] == ["circle"] * 4 + ["round"] * 6
    assert items[2]["images"] == [str(root / "val2014" / "COCO_val2014_000000000042.jpg")]
    assert is_colour(centre_colour(items[2]["images"][0]), "green")
    assert items[1]["meta"] == {"image_id": 393225, "question_type": "is the", "answer_type": "yes/no",
                                "multiple_choice_answer": "yes"}
    _, metrics = vqav2.score(items, {
        "262148000": ["A circle."],  # "circle": 4 of 10 -> 1.0   (other)
        "393225000": ["No"],         # "no": 1 of 10 -> 0.3       (yes/no)
        "42000": ["two"],            # "2": 2 of 10 -> 0.6        (number)
    }, seed=0)
    assert metrics["metrics"] == pytest.approx({"accuracy": (1.0 + 0.3 + 0.6) / 3, "accuracy[answer_type=number]": 0.6,
                                                "accuracy[answer_type=other]": 1.0,
                                                "accuracy[answer_type=yes/no]": 0.3})
    assert metrics["benchmark"]["annotations"] == str(DATA / "v2_mscoco_val2014_annotations.json")


def test_vqav2_question_without_annotation_names_file_and_question_id(tmp_path):
    questions = json.loads((DATA / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    questions["questions"].append({"image_id": 7, "question": "What is it?", "question_id": 7000})
    path = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    path.write_text(json.dumps(questions))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(
        (DATA / "v2_mscoco_val2014_annotations.json").read_text())
    with pytest.raises(BenchmarkError, match=r"v2_OpenEnded_mscoco_val2014_questions\.json: item 4: question_id 7000 "
                                             r"has no annotation in .*v2_mscoco_val2014_annotations\.json"):
        load_benchmark("vqav2", {**VQAV2, "path": str(path), "image_template": None}).load()


# --- VLMEvalKit's TSVs ---------------------------------------------------------------------------

MCQ_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "E", "answer", "category", "l2-category", "image"]


def test_mmstar_tsv_options_from_letter_columns_and_mmbench_image_reference(tmp_path, pngs):
    store = tmp_path / "store"
    path = write_tsv(tmp_path / "MMBench_DEV_EN.tsv", MCQ_HEADER, [
        ["0", "What shape is shown?", "", "circle", "square", "triangle", "star", "", "A", "coarse perception",
         "image scene", b64(pngs["red_circle"])],
        # MMBench: the image cell names the index of the row holding the picture
        ["1", "What colour is the shape?", "The background is white.", "blue", "red", "green", "", "", "B",
         "fine-grained perception", "attribute recognition", "0"],
        ["2", "Which shape is it?", "", "square", "circle", "", "", "", "A", "fine-grained perception",
         "attribute recognition", b64(pngs["blue_square"])],
        ["3", "How many corners\ndoes it have?", "", "2", "3", "4", "5", "6", "B", "math", "numeric",
         b64(pngs["green_triangle"])],
    ])
    mmbench = load_benchmark("mmbench", {"type": "multiple_choice", "path": str(path), "image_store": str(store)})
    items = mmbench.load()
    assert [item["id"] for item in items] == ["0", "1", "2", "3"]
    assert items[1]["prompt"] == ("Hint: The background is white.\nWhat colour is the shape?\n\nA. blue\nB. red\n"
                                  "C. green\n\nAnswer with the letter.")
    assert items[2]["meta"] == {"options": {"A": "square", "B": "circle"}, "category": "fine-grained perception",
                                "l2-category": "attribute recognition"}
    assert list(items[3]["meta"]["options"]) == ["A", "B", "C", "D", "E"] and items[3]["gold"] == "B"
    # Decoded once into the store, named by content; row 1 shares row 0's picture.
    assert [item["images"] for item in items] == [[stored(store, pngs["red_circle"])]] * 2 + [
        [stored(store, pngs["blue_square"])], [stored(store, pngs["green_triangle"])]]
    assert Path(items[2]["images"][0]).read_bytes() == pngs["blue_square"]
    assert len(list(store.iterdir())) == 3
    _, metrics = mmbench.score(items, {"0": ["A"], "1": ["C"], "2": ["(A) square"], "3": ["The answer is B."]},
                               seed=0)
    assert metrics["metrics"] == pytest.approx({
        "accuracy": 3 / 4, "accuracy[category=coarse perception]": 1.0,
        "accuracy[category=fine-grained perception]": 1 / 2, "accuracy[category=math]": 1.0,
        "accuracy[l2-category=attribute recognition]": 1 / 2, "accuracy[l2-category=image scene]": 1.0,
        "accuracy[l2-category=numeric]": 1.0})


def test_pope_tsv_yes_no(tmp_path, pngs):
    store = tmp_path / "store"
    path = write_tsv(tmp_path / "POPE.tsv", ["index", "question", "answer", "category", "image"], [
        ["1", "Is there a circle in the image?", "Yes", "random", b64(pngs["red_circle"])],
        ["2", "Is there a dog in the image?", "No", "random", b64(pngs["red_circle"])],
        ["3", "Is there a square in the image?", "Yes", "adversarial", b64(pngs["blue_square"])],
        ["4", "Is there a triangle in the image?", "No", "adversarial", b64(pngs["blue_square"])],
        ["5", "Is there a triangle in the image?", "Yes", "random", b64(pngs["green_triangle"])],
    ])
    pope = load_benchmark("pope", {"type": "yes_no", "path": str(path), "image_store": str(store)})
    items = pope.load()
    assert [(item["id"], item["prompt"], item["gold"]) for item in items][:2] == [
        ("1", "Is there a circle in the image?", "yes"), ("2", "Is there a dog in the image?", "no")]
    assert items[0]["images"] == items[1]["images"] == [stored(store, pngs["red_circle"])]
    assert is_colour(centre_colour(items[4]["images"][0]), "green")
    _, metrics = pope.score(items, {"1": ["Yes, there is."], "2": ["No."], "3": ["There is not."], "4": ["Yes"],
                                    "5": ["yes"]}, seed=0)
    # TP 1, 5; TN 2; FN 3; FP 4. random: TP 2, TN 1; adversarial: FN 1, FP 1.
    assert metrics["metrics"] == pytest.approx({
        "accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "yes_ratio_pred": 3 / 5,
        **{f"{name}[category=random]": 1.0 for name in ("accuracy", "precision", "recall", "f1")},
        "yes_ratio_pred[category=random]": 2 / 3,
        **{f"{name}[category=adversarial]": 0.0 for name in ("accuracy", "precision", "recall", "f1")},
        "yes_ratio_pred[category=adversarial]": 1 / 2})


def test_vqa_tsv_answer_list_or_single_answer(tmp_path, pngs):
    path = write_tsv(tmp_path / "TextVQA_VAL.tsv", ["index", "image", "question", "answer"], [
        ["0", b64(pngs["red_circle"]), "what does the sign say?", str(["stop"] * 3 + ["halt"] * 7)],
        ["1", b64(pngs["blue_square"]), "what colour is it?", "blue"],
    ])
    vqa = load_benchmark("textvqa", {"type": "vqa", "path": str(path), "image_store": str(tmp_path / "store")})
    items = vqa.load()
    # VLMEvalKit writes a list of answers as Python's str(list); one answer is a list of one.
    assert items[0]["gold"] == ["stop"] * 3 + ["halt"] * 7 and items[1]["gold"] == ["blue"]
    assert Path(items[1]["images"][0]).read_bytes() == pngs["blue_square"]
    _, metrics = vqa.score(items[:1], {"0": ["Stop."]}, seed=0)  # 3 of 10 -> 0.9
    assert metrics["metrics"] == pytest.approx({"accuracy": 0.9})
    # one answer: the exact match of the normalised answers
    rows, _ = vqa.score(items, {"0": ["Stop."], "1": ["Blue."]}, seed=0)
    assert [row["score"]["accuracy"] for row in rows] == pytest.approx([0.9, 1.0])
    rows, _ = vqa.score(items, {"0": ["go"], "1": ["red"]}, seed=0)
    assert [row["score"]["accuracy"] for row in rows] == [0.0, 0.0]


@pytest.mark.parametrize("image, reason", [
    ("iVBORw0KGgo!!!", r"column 'image': not an image: a cell that is not base64 \(Only base64 data is allowed\)"),
    ("7", r"column 'image' refers to the row of index 7, but no row of that index has an image"),
    (b64(b"this is text, not a picture"), r"not an image: image bytes \(not a format PIL reads\)"),
])
def test_tsv_bad_image_cell_names_file_and_line(tmp_path, pngs, image, reason):
    path = write_tsv(tmp_path / "bad.tsv", MCQ_HEADER, [
        ["0", "Which shape\nis it?", "", "circle", "square", "", "", "", "A", "c", "l2", b64(pngs["red_circle"])],
        ["1", "Which colour?", "", "red", "blue", "", "", "", "A", "c", "l2", image],
    ])
    bench = load_benchmark("bad", {"type": "multiple_choice", "path": str(path), "image_store": str(tmp_path / "s")})
    # Row 0 spans lines 2 and 3 (a quoted cell with a newline): row 1 starts on line 4.
    with pytest.raises(BenchmarkError, match=r"bad\.tsv:4: " + reason):
        bench.load()
