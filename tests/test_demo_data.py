"""The embedded default data: deterministic from the seed, benchmarks disjoint from the pool, noise
of every kind, benchmark files in their public formats."""

import base64
import hashlib
import io
import json
import re
from collections import Counter

import pyarrow.parquet as pq

from juicebox.demo_data import COLORS, SHAPES, SYNONYMS, generate

SIZES = dict(n_math=60, n_math_extra=20, n_vision=60, n_vision_extra=20, n_bench_math=30, n_bench_vision=12,
             noise_fraction=0.3)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def pixels(data: bytes) -> bytes:
    """An image's decoded pixels (its size too), whatever file it came in."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return repr(image.size).encode() + image.convert("RGB").tobytes()


def vision_sources(folder):
    """The picture items of both sources, as the generator wrote them."""
    items = json.loads((folder / "vision.json").read_text())
    return items, pq.read_table(folder / "vision_extra.parquet").to_pylist()


def image_bytes(folder, value) -> bytes:
    """The bytes of one source image, whatever its form."""
    if isinstance(value, dict):
        return value["bytes"] or (folder / value["path"]).read_bytes()
    if value.startswith("data:"):
        return base64.b64decode(value.split(",", 1)[1])
    return (folder / value).read_bytes() if value.endswith(".png") else base64.b64decode(value)


def pool_images(folder) -> list[bytes]:
    """Every image the vision sources give (broken items aside)."""
    items, rows = vision_sources(folder)
    return [image_bytes(folder, i["image"]) for i in items if i["noise"] != "broken"] + \
        [image_bytes(folder, r["img"]) for r in rows if r["noise"] != "broken"]


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_bytes(tmp_path):
    generate(str(tmp_path / "a"), seed=3, **SIZES)
    generate(str(tmp_path / "b"), seed=3, **SIZES)
    generate(str(tmp_path / "c"), seed=4, **SIZES)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_benchmarks_are_disjoint_from_every_pool_item(tmp_path):
    manifest = generate(str(tmp_path), seed=5, **SIZES)
    assert manifest["disjoint"] == {"math_keys_shared": 0, "math_questions_shared": 0, "scene_keys_shared": 0,
                                    "scene_pixels_shared": 0}
    assert set(manifest["disjoint_means"]) == {"math", "vision"}
    bench = read_lines(tmp_path / "bench" / "math_test.jsonl")
    pool_questions = []
    for line in (tmp_path / "math.jsonl").read_text().splitlines():
        try:
            pool_questions.append(json.loads(line).get("question") or "")
        except json.JSONDecodeError:
            continue
    # Checked here again from the files, not from the manifest: no benchmark question is in the pool.
    assert not {b["question"].lower() for b in bench} & {q.lower() for q in pool_questions}
    # No benchmark picture shows what a pool picture shows (same pixels), in any of their forms.
    bench_images = {c["image"] for c in json.loads((tmp_path / "bench" / "caption_test.json").read_text())}
    bench_pixels = {pixels((tmp_path / "bench" / image).read_bytes()) for image in bench_images}
    assert len(bench_pixels) == SIZES["n_bench_vision"]
    assert not bench_pixels & {pixels(image) for image in pool_images(tmp_path)}


def test_math_is_worked_steps_in_gsm8k_format(tmp_path):
    generate(str(tmp_path), seed=5, **SIZES)
    for item in read_lines(tmp_path / "bench" / "math_test.jsonl"):
        *steps, final = item["answer"].split("\n")
        assert len(steps) == 2 and final.startswith("#### ")
        values = []
        for step in steps:
            left, op, right, _, result = step.rstrip(".").split()
            assert eval(f"{left} {op} {right}") == int(result)  # each step is right
            values.append(int(result))
        assert int(final[5:]) == values[-1] and str(steps[0].split()[0]) in item["question"]


def test_noise_kinds_present(tmp_path):
    generate(str(tmp_path), seed=6, **SIZES)
    kinds = set()
    for line in (tmp_path / "math.jsonl").read_text().splitlines():
        try:
            kinds.add(json.loads(line).get("noise"))
        except json.JSONDecodeError:
            kinds.add("unparseable")
    assert {"clean", "markup", "repetition", "overlong", "exact_dup", "near_dup", "wrong_answer", "broken",
            "unparseable"} <= kinds
    items, rows = vision_sources(tmp_path)
    for source in (items, rows):
        kinds = Counter(item["noise"] for item in source)
        assert {"clean", "markup", "repetition", "overlong", "exact_dup", "near_dup", "wrong_answer", "tiny_image",
                "extreme_aspect", "blank_image", "mismatched_image", "broken"} <= set(kinds), kinds


def test_mismatched_pictures_show_another_scene(tmp_path):
    generate(str(tmp_path), seed=6, **SIZES)
    items, _ = vision_sources(tmp_path)
    by_id = {item["id"]: item for item in items}
    mismatched = [item for item in items if item["noise"] == "mismatched_image"]
    assert mismatched
    for item in mismatched:
        original = by_id[item["noise_of"]]
        assert {k: v for k, v in item.items() if k not in ("id", "image", "noise", "noise_of")} == \
            {k: v for k, v in original.items() if k not in ("id", "image", "noise", "noise_of")}
        assert pixels(image_bytes(tmp_path, item["image"])) != pixels(image_bytes(tmp_path, original["image"]))


def test_answers_are_only_in_the_picture(tmp_path):
    generate(str(tmp_path), seed=7, **SIZES)
    items, rows = vision_sources(tmp_path)
    records = [(i["task"], i["question"], i.get("answer")) for i in items if i["noise"] == "clean"]
    records += [(r["task"], r["query"], r["final"]) for r in rows if r["noise"] == "clean"]
    assert {task for task, _, _ in records} == {"vqa", "yes_no", "mcq", "caption"}
    named = re.compile(r"\b(" + "|".join(COLORS + SHAPES) + r")s?\b", re.IGNORECASE)
    for task, question, answer in records:
        if task == "caption":
            assert not named.search(question)  # "Describe the image."
        elif task == "vqa":
            assert answer.lower() not in question.lower().split("\n")[0].rstrip("?").split()
        elif task == "yes_no":
            assert answer in ("Yes", "No")
        else:
            assert answer in "ABCD" and "Options: A: " in question


def test_every_image_form_and_image_noise(tmp_path):
    from PIL import Image

    generate(str(tmp_path), seed=8, **SIZES)
    items, rows = vision_sources(tmp_path)
    sizes = {}
    for item in items + [{**r, "image": r["img"]["path"]} for r in rows]:
        if item["noise"] in ("tiny_image", "extreme_aspect"):
            with Image.open(tmp_path / item["image"]) as image:
                sizes.setdefault(item["noise"], set()).add(image.size)
    assert sizes["tiny_image"] == {(8, 8)} and sizes["extreme_aspect"] <= {(200, 10), (10, 200)}
    # JSON: paths, data URIs and bare base64; Parquet: {bytes, path} with bytes or with a path only.
    forms = Counter("data_uri" if i["image"].startswith("data:") else "path" if i["image"].endswith(".png")
                    else "base64" for i in items)
    assert forms["data_uri"] and forms["base64"] and forms["path"]
    assert any(r["img"]["bytes"] for r in rows) and any(r["img"]["bytes"] is None for r in rows)


def test_vision_benchmarks_in_their_public_formats(tmp_path):
    generate(str(tmp_path), seed=9, **SIZES)
    bench = tmp_path / "bench"
    pope = read_lines(bench / "pope_test.jsonl")
    assert {tuple(sorted(p)) for p in pope} == {("category", "image", "label", "question_id", "text")}
    assert Counter(p["label"] for p in pope) == {"yes": SIZES["n_bench_vision"], "no": SIZES["n_bench_vision"]}
    assert {p["category"] for p in pope} == {"shape", "color"}
    mmstar = pq.read_table(bench / "mmstar_test.parquet").to_pylist()
    assert set(mmstar[0]) == {"index", "question", "image", "answer", "category", "l2_category", "meta_info"}
    assert all(m["image"]["bytes"] and m["answer"] in "ABCD" and "\nOptions: A: " in m["question"] for m in mmstar)
    vqa = read_lines(bench / "vqa_test.jsonl")
    assert all(len(v["answers"]) == 10 for v in vqa)
    captions = json.loads((bench / "caption_test.json").read_text())
    assert all(len(c["references"]) >= 3 and set(c["objects"]) <= set(SHAPES) for c in captions)
    synonyms = [line.split(", ") for line in (bench / "synonyms.txt").read_text().splitlines()]
    assert {words[0] for words in synonyms} == set(SYNONYMS)


def test_the_data_controls_pools_differ_in_a_third_of_their_final_answers(tmp_path):
    from juicebox.arithmetic import steps
    from juicebox.io import read_jsonl
    from juicebox.scoring import gold_answer_math

    generate(str(tmp_path), seed=5, **SIZES)
    clean = read_jsonl(tmp_path / "controls" / "math_clean.jsonl")
    wrong = read_jsonl(tmp_path / "controls" / "math_wrong.jsonl")
    source = []
    for line in (tmp_path / "math.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the source's deliberately broken lines
            continue
        if record.get("noise") == "clean":
            source.append(record)
    assert [r["id"] for r in clean] == [r["id"] for r in wrong]
    assert sorted(r["id"] for r in clean) == sorted(r["id"] for r in source)  # the source interleaves its noise
    changed = [(c, w) for c, w in zip(clean, wrong) if c["answer"] != w["answer"]]
    assert len(changed) == len(clean) // 3
    for c, w in changed:  # the steps kept, the final answer another number
        assert steps(c["answer"]) == steps(w["answer"]) and w["question"] == c["question"]
        assert gold_answer_math(w["answer"]) != gold_answer_math(c["answer"]) and w["noise"] == "wrong_answer"


def test_a_wider_generator_has_more_problems_and_the_narrow_one_is_unchanged(tmp_path):
    from juicebox.demo_data import MATH_PROBLEMS

    assert (MATH_PROBLEMS[6], MATH_PROBLEMS[8]) == (486, 1096)
    generate(str(tmp_path / "narrow"), seed=5, **{**SIZES, "math_max": 6})
    generate(str(tmp_path / "default"), seed=5, **SIZES)  # math_max's default is the narrow generator
    assert (tmp_path / "narrow" / "math.jsonl").read_bytes() == (tmp_path / "default" / "math.jsonl").read_bytes()
    import pytest

    with pytest.raises(ValueError, match="math_max 6 makes 486"):
        generate(str(tmp_path / "x"), seed=5, **{**SIZES, "n_bench_math": 450, "math_max": 6})
