"""The embedded default data: tasks a tiny model learns part of the way, with realistic noise.

Everything is generated from one seed. Two task families, each chosen so that after the SFT warm
start the policy is right some of the time (the zone where learning from its own verified samples
works):

* **Text math in GSM8K's format.** Two-step word problems over small numbers (``a + b - c``,
  ``a + b + c``, ``a * b + c``); the answer is worked steps then ``#### N``, so a small model can
  learn it step by step from the arithmetic facts the pool shows.
* **Shape-world images** for the vision-language model. A 64x64 picture holds one to three
  shapes (circle, square, triangle) in red, green, blue or yellow, each in its own quadrant. Every
  question is about the picture and its answer is only there: how many shapes, what colour the
  square is, what shape the green one is (``vqa``), whether a blue circle is present (``yes_no``),
  the same as four lettered options in MMStar's format (``mcq``), and a caption (``caption``).

Each item has an underlying *key*: the operation and operands of a math problem, the objects of
a scene (colour, shape, quadrant). The benchmark keys are drawn first and reserved, so no pool
item, clean or noisy, shares a key with a benchmark item: no benchmark problem's operation and
operands appear in the pool (its arithmetic facts do), and no benchmark picture shows the scene
of a pool picture (its colours and shapes, elsewhere combined, do). ``manifest.json`` records
the checks: shared keys, shared question texts, shared image pixels, all 0.

The benchmarks are written in the public formats they stand for: GSM8K JSONL (math), POPE
(``yes_no``: question_id, image, text, label, category: shape or colour asked about), MMStar (Parquet with
the image bytes; question holding ``Options: A: ..., B: ...``, answer letter, category,
l2_category), TextVQA/VQAv2 (ten human answers, some phrased otherwise or wrong), COCO-caption
style captions with each picture's annotated objects and a CHAIR synonyms file.

Noise for the data stages to find (recorded in ``meta.noise`` so its removal can be measured):
markup and junk characters, repetition, overlong junk, exact and near duplicates, wrong answers;
for pictures also images the image ops catch (tiny 8x8, extreme aspect ratios 200x10 and 10x200,
blank), and pictures whose text does not match them (``mismatched_image``: the question or
caption of another scene; only a model can catch these). Broken records that validation must
quarantine are written too (``meta`` cannot carry a label for those; the pool's
``rejected.jsonl`` shows them), among them images that are missing, not images, or truncated.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import random
from pathlib import Path

from .io import atomic_open, atomic_path, write_json, write_jsonl

NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "stamps", "shells", "cards"]
COLORS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]
# An option for the shape questions that no picture shows (MMStar's questions have four options).
DISTRACTOR_SHAPE = "star"
RGB = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (235, 215, 30)}
QUADRANTS = {0: (16, 16), 1: (48, 16), 2: (16, 48), 3: (48, 48)}
QUADRANT_NAMES = {0: "top left", 1: "top right", 2: "bottom left", 3: "bottom right"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
BACKGROUND = (200, 200, 200)
RADIUS = 11
JUNK = "¤•▓©®§¶†‡±×÷¬¦"
# LLaVA's instruction for short answers; MMStar's for a letter (VLMEvalKit). The pool's prompts
# carry them, as LLaVA's training data does; the benchmarks add them with ``prompt_template``.
SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
CAPTION_PROMPTS = ["Describe the image.", "Write a one-sentence caption for the picture.",
                   "What does this picture show?", "Caption this image."]
# CHAIR's synonyms file: the canonical object first, then the words that name it.
SYNONYMS = {"circle": ["circle", "disc", "disk", "round shape"], "square": ["square", "box", "block"],
            "triangle": ["triangle"], "star": ["star"]}


# --- math --------------------------------------------------------------------------------

def math_key(rng: random.Random, top: int = 6) -> tuple:
    """An underlying problem: (kind, a, b, c) with small numbers (the sums' operands up to ``top``;
    the products' factors 2-4), so every step is one of a few hundred arithmetic facts a small model
    can learn. ``top`` 6 makes 486 distinct problems, 8 makes 1096."""
    kind = rng.choice(["add_sub", "add_add", "mul_add"])
    if kind == "mul_add":
        return kind, rng.randint(2, 4), rng.randint(2, 4), rng.randint(1, top)
    a, b = rng.randint(1, top), rng.randint(1, top)
    if kind == "add_sub":
        return kind, a, b, rng.randint(1, a + b - 1)
    return kind, a, b, rng.randint(1, top)


def math_problems(top: int) -> int:
    """How many distinct problems :func:`math_key` makes with operands up to ``top``."""
    add_sub = sum(a + b - 1 for a in range(1, top + 1) for b in range(1, top + 1))
    return add_sub + top ** 3 + 9 * top


MATH_PROBLEMS = {top: math_problems(top) for top in range(2, 13)}


def math_steps(key: tuple) -> tuple[list[tuple[int, str, int, int]], int]:
    """The worked steps (left, operator, right, result) and the final answer of a key."""
    kind, a, b, c = key
    if kind == "mul_add":
        first = a * b
        return [(a, "*", b, first), (first, "+", c, first + c)], first + c
    first = a + b
    last = first - c if kind == "add_sub" else first + c
    return [(a, "+", b, first), (first, "-" if kind == "add_sub" else "+", c, last)], last


def math_answer(key: tuple) -> int:
    """The gold answer of a problem key."""
    return math_steps(key)[1]


def math_question(key: tuple, rng: random.Random) -> str:
    """A two-step word problem for a key, in one of several phrasings."""
    kind, a, b, c = key
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if kind == "add_sub":
        forms = [f"{name} has {a} {item} and gets {b} more. Then {name} gives away {c}. How many {item} are left?",
                 f"A box holds {a} {item}. Someone adds {b} and later takes out {c}. How many {item} are in the box?"]
    elif kind == "add_add":
        forms = [f"{name} has {a} {item}, finds {b} more and is given {c} more. How many {item} does {name} have?",
                 f"A shelf has {a} {item}. {b} are added in the morning and {c} in the evening. How many {item} "
                 "are on the shelf?"]
    else:
        forms = [f"{name} buys {a} bags with {b} {item} in each and already has {c}. How many {item} is that in "
                 "total?",
                 f"A tray has {a} rows of {b} {item} and {c} more on the side. How many {item} are there?"]
    return rng.choice(forms)


def math_solution(key: tuple, final: int | None = None) -> str:
    """The GSM8K-style worked answer: one line per step, then ``#### <number>`` (``final``
    replaces the number on that line: a wrong answer)."""
    steps, answer = math_steps(key)
    lines = [f"{left} {op} {right} = {result}." for left, op, right, result in steps]
    return "\n".join(lines) + f"\n#### {answer if final is None else final}"


# --- shape-world scenes ------------------------------------------------------------------

def scene_key(rng: random.Random) -> tuple:
    """An underlying scene: one to three (quadrant, colour, shape) objects, in quadrant order."""
    quadrants = sorted(rng.sample(range(4), rng.choice([1, 2, 2, 3, 3])))
    return tuple((q, rng.choice(COLORS), rng.choice(SHAPES)) for q in quadrants)


def scene_image(key: tuple):
    """The scene drawn on a 64x64 RGB PIL image."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for quadrant, color, shape in key:
        cx, cy = QUADRANTS[quadrant]
        box = (cx - RADIUS, cy - RADIUS, cx + RADIUS, cy + RADIUS)
        if shape == "circle":
            draw.ellipse(box, fill=RGB[color])
        elif shape == "square":
            draw.rectangle((cx - RADIUS + 2, cy - RADIUS + 2, cx + RADIUS - 2, cy + RADIUS - 2), fill=RGB[color])
        else:
            draw.polygon([(cx, cy - RADIUS), (cx - RADIUS, cy + RADIUS - 2), (cx + RADIUS, cy + RADIUS - 2)],
                         fill=RGB[color])
    return image


def draw_scene(key: tuple, path: Path) -> None:
    """A 64x64 PNG of the scene."""
    save_png(scene_image(key), path)


def save_png(image, path: Path) -> None:
    """Write a PIL image as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def _pixels(image) -> str:
    return hashlib.sha256(repr(image.size).encode() + image.convert("RGB").tobytes()).hexdigest()


def _listing(key: tuple) -> str:
    names = [f"a {color} {shape}" for _, color, shape in key]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def scene_references(key: tuple, rng: random.Random) -> list[str]:
    """Three captions of a scene; the first, the plain listing, is the one SFT trains on."""
    listing = _listing(key)
    placed = [f"a {color} {shape} at the {QUADRANT_NAMES[q]}" for q, color, shape in key]
    where = placed[0] if len(placed) == 1 else ", ".join(placed[:-1]) + " and " + placed[-1]
    count = NUMBER_WORDS[len(key)]
    others = [f"{where[0].upper()}{where[1:]}.",
              f"There {'is one shape' if len(key) == 1 else f'are {count} shapes'}: {listing}.",
              f"A grey picture with {listing}."]
    rng.shuffle(others)
    return [f"{listing[0].upper()}{listing[1:]}."] + others[:2]


def caption_prompt(rng: random.Random) -> str:
    """A generic caption instruction: it names nothing, the answer is only in the image."""
    return rng.choice(CAPTION_PROMPTS)


def scene_objects(key: tuple) -> list[str]:
    """The annotated objects of a scene (CHAIR's ground truth): its shapes."""
    return sorted({shape for _, _, shape in key})


def _unique(key: tuple, attribute: int) -> list[tuple]:
    """The objects whose value of ``attribute`` (1 colour, 2 shape) no other object shares."""
    values = [obj[attribute] for obj in key]
    return [obj for obj in key if values.count(obj[attribute]) == 1]


def vqa_question(key: tuple, rng: random.Random) -> tuple[str, str, str]:
    """A short-answer question about the scene → (question, answer, kind: count/color/shape)."""
    kinds = ["count"] + (["color"] if _unique(key, 2) else []) + (["shape"] if _unique(key, 1) else [])
    kind = rng.choice(kinds)
    if kind == "count":
        question = rng.choice(["How many shapes are in the image?", "How many objects are there in the picture?"])
        return question, str(len(key)), kind
    if kind == "color":
        _, color, shape = rng.choice(_unique(key, 2))
        return f"What color is the {shape}?", color, kind
    _, color, shape = rng.choice(_unique(key, 1))
    return f"What shape is the {color} object?", shape, kind


def presence_question(key: tuple, rng: random.Random, present: bool) -> tuple[str, str, str]:
    """POPE's question, whether an object is in the picture → (question, "yes"/"no", category): a
    shape ("Is there a circle ...") or a colour ("Is there a red shape ..."); the category says
    which (POPE's files put their negative-sampling split there)."""
    shapes = {shape for _, _, shape in key}
    by_shape = rng.random() < 0.5 and (present or len(shapes) < len(SHAPES))
    values, shown = (SHAPES, shapes) if by_shape else (COLORS, {color for _, color, _ in key})
    value = rng.choice(sorted(shown) if present else [v for v in values if v not in shown])
    question = f"Is there a {value} in the image?" if by_shape else f"Is there a {value} shape in the image?"
    return question, "yes" if present else "no", "shape" if by_shape else "color"


def choice_question(key: tuple, rng: random.Random) -> dict:
    """An MMStar-style record: the question with its four options, the letter, the categories."""
    question, answer, kind = vqa_question(key, rng)
    pool = {"count": [str(n) for n in range(1, 5)], "color": list(COLORS),
            "shape": SHAPES + [DISTRACTOR_SHAPE]}[kind]
    options = list(pool)  # in a fixed order (colours, shapes, counts), as a generated test may keep them
    letters = "ABCD"
    text = question + "\nOptions: " + ", ".join(f"{letter}: {option}" for letter, option in zip(letters, options))
    category, l2 = {"count": ("coarse perception", "object counting"),
                    "color": ("fine-grained perception", "attribute recognition"),
                    "shape": ("fine-grained perception", "object recognition")}[kind]
    return {"question": text, "answer": letters[options.index(answer)], "category": category, "l2_category": l2}


def vision_record(key: tuple, rng: random.Random) -> dict:
    """One pool item about a scene: a task drawn with its weight, its prompt and gold."""
    task = rng.choices(["vqa", "yes_no", "mcq", "caption"], weights=[4, 3, 2, 2])[0]
    if task == "vqa":
        question, answer, _ = vqa_question(key, rng)
        return {"task": task, "question": f"{question}\n{SHORT_ANSWER}", "answer": answer}
    if task == "yes_no":
        question, answer, _ = presence_question(key, rng, rng.random() < 0.5)
        return {"task": task, "question": f"{question}\n{SHORT_ANSWER}", "answer": answer.capitalize()}
    if task == "mcq":
        record = choice_question(key, rng)
        return {"task": task, "question": f"{record['question']}\n{LETTER_ANSWER}", "answer": record["answer"]}
    return {"task": task, "question": caption_prompt(rng), "captions": scene_references(key, rng)}


def human_answers(answer: str, rng: random.Random) -> list[str]:
    """Ten annotators' answers, as VQAv2/TextVQA give them: most say the answer, some in other
    words (a number spelt out, an article, a capital), one now and then something else."""
    answers = []
    for _ in range(10):
        r = rng.random()
        if r < 0.12:
            answers.append(rng.choice([c for c in COLORS + SHAPES + ["1", "2", "3", "4"] if c != answer]))
        elif r < 0.3 and answer.isdigit():
            answers.append(NUMBER_WORDS[int(answer)])
        elif r < 0.4:
            answers.append(f"the {answer}" if not answer.isdigit() else f"{answer} shapes")
        elif r < 0.5:
            answers.append(answer.capitalize())
        else:
            answers.append(answer)
    return answers


# --- noise -------------------------------------------------------------------------------

def add_text_noise(text: str, kind: str, rng: random.Random) -> str:
    """Corrupt a prompt the way scraped data is corrupted."""
    if kind == "markup":
        junk = "".join(rng.choice(JUNK) for _ in range(rng.randint(25, 60)))
        return f"<div class=\"q\"><p>{text}</p>&nbsp;<br/></div> {junk}"
    if kind == "repetition":
        return " ".join([text] * rng.randint(6, 12))
    if kind == "overlong":
        blob = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(1500, 3000)))
        return f"{text} {blob}"
    if kind == "near_dup":
        variants = [text.upper(), text.replace("?", " ?").replace(".", " ."), f"  {text.lower()}  ", f"{text}!!"]
        return rng.choice(variants)
    raise ValueError(f"unknown noise kind {kind!r}")


NOISE_KINDS = ["markup", "repetition", "overlong", "exact_dup", "near_dup", "wrong_answer"]


def wrong_answer(task: str, answer: str, rng: random.Random) -> str:
    """Another answer of the same kind: a wrong number, colour, shape, yes/no or letter."""
    if task == "math":
        return str(int(answer) + rng.choice([-3, -2, -1, 1, 2, 3, 10]))
    if task == "yes_no":
        return "No" if answer == "Yes" else "Yes"
    if task == "mcq":
        return rng.choice([letter for letter in "ABCD" if letter != answer])
    for values in (COLORS, SHAPES, ["1", "2", "3"]):
        if answer in values:
            return rng.choice([v for v in values if v != answer])
    raise ValueError(f"no wrong answer for {answer!r}")


def _noisy_items(clean: list[dict], noise_fraction: float, rng: random.Random, keys: dict) -> list[dict]:
    """Noisy variants of random clean items; each carries ``noise`` and ``noise_of``. ``keys``
    names the item's fields: id, text (the prompt), answer, task (None: the item's own or math)."""
    out = []
    for n in range(int(len(clean) * noise_fraction)):
        base = rng.choice(clean)
        kinds = NOISE_KINDS if base.get(keys["answer"]) is not None else NOISE_KINDS[:-1]
        kind = kinds[n % len(kinds)]
        item = json.loads(json.dumps(base))
        item[keys["id"]] = f"{base[keys['id']]}-n{n}"
        item["noise"], item["noise_of"] = kind, base[keys["id"]]
        if kind == "wrong_answer":
            task = base.get("task", "math")
            if task == "math":
                key = keys["solutions"][base[keys["id"]]]
                item[keys["answer"]] = math_solution(key, math_answer(key) + rng.choice([-3, -2, -1, 1, 2, 10]))
            else:
                item[keys["answer"]] = wrong_answer(task, base[keys["answer"]], rng)
        elif kind != "exact_dup":
            item[keys["text"]] = add_text_noise(base[keys["text"]], kind, rng)
        out.append(item)
    return out


IMAGE_NOISE_KINDS = ["tiny_image", "extreme_aspect", "blank_image"]


def noisy_image(key: tuple, kind: str, n: int):
    """A scene's image spoiled the way scraped images are: shrunk to 8x8, squeezed to 200x10 or
    10x200 (alternately), or blank (a placeholder with nothing on it)."""
    from PIL import Image

    if kind == "tiny_image":
        return scene_image(key).resize((8, 8))
    if kind == "extreme_aspect":
        return scene_image(key).resize((200, 10) if n % 2 == 0 else (10, 200))
    if kind == "blank_image":
        return Image.new("RGB", (64, 64), BACKGROUND)
    raise ValueError(f"unknown image noise kind {kind!r}")


def _image_noise_items(clean: list[dict], keys: dict[str, tuple], count: int, rng: random.Random,
                       fields: dict, out: Path, tag: str) -> list[dict]:
    """Copies of random clean items with a spoiled image (the kinds in turn); each carries
    ``noise`` and ``noise_of``. The images are written to ``out/images/``."""
    out_items = []
    for n in range(count):
        base = rng.choice(clean)
        kind = IMAGE_NOISE_KINDS[n % len(IMAGE_NOISE_KINDS)]
        name = f"images/{tag}_{kind}{n:03d}.png"
        save_png(noisy_image(keys[base[fields['id']]], kind, n), out / name)
        item = json.loads(json.dumps(base))
        item[fields["id"]], item[fields["image"]] = f"{base[fields['id']]}-i{n}", name
        item["noise"], item["noise_of"] = kind, base[fields["id"]]
        out_items.append(item)
    return out_items


def _mismatched_items(clean: list[dict], keys: dict[str, tuple], count: int, rng: random.Random,
                      fields: dict) -> list[dict]:
    """Copies of random clean items shown with another item's picture, of another scene: the text
    (question and answer, or captions) no longer describes the image. Only a model sees that."""
    out_items = []
    for n in range(count):
        base, other = rng.sample(clean, 2)
        while keys[other[fields["id"]]] == keys[base[fields["id"]]]:
            other = rng.choice(clean)
        item = json.loads(json.dumps(base))
        item[fields["id"]], item[fields["image"]] = f"{base[fields['id']]}-m{n}", other[fields["image"]]
        item["noise"], item["noise_of"] = "mismatched_image", base[fields["id"]]
        out_items.append(item)
    return out_items


def _png_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _interleave(clean: list[dict], noisy: list[dict], rng: random.Random) -> list[dict]:
    items = clean + noisy
    rng.shuffle(items)
    return items


def _scatter(items: list[dict], extra: list[dict], rng: random.Random) -> None:
    for item in extra:
        items.insert(rng.randrange(len(items) + 1), item)


# --- writers -----------------------------------------------------------------------------

def _unique_keys(make, n: int, reserved: set, rng: random.Random) -> list:
    keys = []
    while len(keys) < n:
        key = make(rng)
        if key not in reserved:
            reserved.add(key)
            keys.append(key)
    return keys


def generate(outdir: str, seed: int, n_math: int, n_math_extra: int, n_vision: int, n_vision_extra: int,
             n_bench_math: int, n_bench_vision: int, noise_fraction: float, math_max: int = 6) -> dict:
    """Write the demo sources and benchmark splits under ``outdir``; return a manifest."""
    out = Path(outdir)
    rng = random.Random(seed)
    # Pictures draw from their own generator, so the math data does not depend on them.
    vision_rng = random.Random(f"{seed}:vision")
    used_math: set = set()
    used_scene: set = set()
    # Benchmarks first: their keys are reserved before any pool item is drawn.
    def make_math(r):
        return math_key(r, math_max)

    if n_bench_math + n_math + n_math_extra > MATH_PROBLEMS[math_max]:
        raise ValueError(f"demo_data: {n_bench_math} + {n_math} + {n_math_extra} math problems asked for, but "
                         f"math_max {math_max} makes {MATH_PROBLEMS[math_max]}; raise math_max or ask for fewer")
    bench_math_keys = _unique_keys(make_math, n_bench_math, used_math, rng)
    math_keys = _unique_keys(make_math, n_math + n_math_extra, used_math, rng)
    bench_scene_keys = _unique_keys(scene_key, n_bench_vision, used_scene, vision_rng)
    scene_keys = _unique_keys(scene_key, n_vision + n_vision_extra, used_scene, vision_rng)

    math_files = _write_math(out, rng, bench_math_keys, math_keys, n_math, noise_fraction)
    images = _SceneImages(out / "images")
    bench_files = _write_vision_benchmarks(out, vision_rng, bench_scene_keys, images)
    bench_pixels = set(images.pixels.values())
    vision_files = _write_vision(out, vision_rng, scene_keys, n_vision, noise_fraction, images)
    pool_pixels = {pixels for key, pixels in images.pixels.items() if key in set(scene_keys)}

    bench_questions = {json.loads(line)["question"].lower()
                       for line in (out / "bench" / "math_test.jsonl").read_text().splitlines()}
    manifest = {
        "seed": seed,
        "files": {**math_files["files"], **vision_files["files"], **bench_files["files"]},
        "counts": {**math_files["counts"], **vision_files["counts"], **bench_files["counts"],
                   "images": len(images.files)},
        "disjoint": {
            "math_keys_shared": len(set(bench_math_keys) & set(math_keys)),
            "math_questions_shared": len(bench_questions & math_files["questions"]),
            "scene_keys_shared": len(set(bench_scene_keys) & set(scene_keys)),
            "scene_pixels_shared": len(bench_pixels & pool_pixels),
        },
        "disjoint_means": {
            "math": "no pool problem (clean or noisy) has a benchmark problem's operation and operands, nor "
                    "its question text; the arithmetic facts of the steps are shared",
            "vision": "no pool picture shows a benchmark picture's scene (the same objects, colours and "
                      "places) or has its pixels; colours and shapes recur in other combinations",
        },
    }
    if any(manifest["disjoint"].values()):
        raise AssertionError(f"benchmark and pool overlap: {manifest['disjoint']}")
    write_json(out / "manifest.json", manifest)
    return manifest


def _write_math(out: Path, rng: random.Random, bench_keys: list, keys: list, n_math: int,
                noise_fraction: float) -> dict:
    """GSM8K benchmark, main JSONL source (id, question, answer, difficulty) and CSV source (uid,
    problem, final); both pool answers are worked solutions."""
    bench = [{"id": f"bm{i:04d}", "question": math_question(k, rng), "answer": math_solution(k)}
             for i, k in enumerate(bench_keys)]
    write_jsonl(out / "bench" / "math_test.jsonl", bench)

    clean = [{"id": f"m{i:05d}", "question": math_question(k, rng), "answer": math_solution(k),
              "difficulty": len(str(math_answer(k))), "noise": "clean"} for i, k in enumerate(keys[:n_math])]
    solutions = {item["id"]: k for item, k in zip(clean, keys)}
    items = _interleave(clean, _noisy_items(clean, noise_fraction, rng, {"id": "id", "text": "question",
                                                                         "answer": "answer", "solutions": solutions}),
                        rng)
    lines = [json.dumps(item, ensure_ascii=False) for item in items]
    broken = [
        '{"id": "m-broken-1", "question": "What is 3 plus 4?", "answer": "7"',  # unparseable
        json.dumps({"id": "m-broken-2", "answer": "5", "noise": "broken"}),  # missing prompt
        json.dumps({"id": "m-broken-3", "question": "What is 9 minus 2?", "answer": {"value": 7},
                    "noise": "broken"}),  # wrong type
        json.dumps({"id": "m-broken-4", "question": "   ", "answer": "1", "noise": "broken"}),  # empty prompt
        json.dumps({"id": clean[0]["id"], "question": "What is 1 plus 1?", "answer": "2",
                    "noise": "broken"}),  # duplicate id
    ]
    for offset, line in zip(range(37, 10_000, 97), broken):
        lines.insert(min(offset, len(lines)), line)
    with atomic_open(out / "math.jsonl") as handle:
        handle.write("\n".join(lines) + "\n")

    extra = [{"uid": f"x{i:05d}", "problem": math_question(k, rng), "final": math_solution(k), "noise": "clean"}
             for i, k in enumerate(keys[n_math:])]
    extra_solutions = {item["uid"]: k for item, k in zip(extra, keys[n_math:])}
    extra_items = _interleave(extra, _noisy_items(extra, noise_fraction, rng, {
        "id": "uid", "text": "problem", "answer": "final", "solutions": extra_solutions}), rng)
    with atomic_open(out / "math_extra.csv", "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uid", "problem", "final", "noise", "noise_of"])
        for i, item in enumerate(extra_items):
            writer.writerow([item["uid"], item["problem"], item["final"], item["noise"], item.get("noise_of", "")])
            if i == 20:
                writer.writerow(["x-broken-1", "What is 2 plus 2?", "4", "broken", "", "extra-column"])
    controls = _write_math_controls(out, rng, clean, solutions)
    questions = {item["question"].lower() for item in items} | {item["problem"].lower() for item in extra_items}
    return {"files": {"math": "math.jsonl", "math_extra": "math_extra.csv", "bench_math": "bench/math_test.jsonl",
                      **controls},
            "counts": {"math": len(lines), "math_extra": len(extra_items) + 1, "bench_math": len(bench),
                       "controls_clean": len(clean), "controls_wrong": len(clean)},
            "questions": questions}


def _write_math_controls(out: Path, rng: random.Random, clean: list[dict], solutions: dict) -> dict:
    """The data control's two pools (``make demo-controls``): the main source's clean problems as they
    are, and the same problems with a third of them (a seeded choice) given a wrong final answer, the
    worked steps left as they are (as the pool's ``wrong_answer`` noise)."""
    wrong_ids = set(rng.sample([item["id"] for item in clean], len(clean) // 3))
    wrong = []
    for item in clean:
        if item["id"] in wrong_ids:
            key = solutions[item["id"]]
            item = {**item, "answer": math_solution(key, math_answer(key) + rng.choice([-3, -2, -1, 1, 2, 3])),
                    "noise": "wrong_answer"}
        wrong.append(item)
    write_jsonl(out / "controls" / "math_clean.jsonl", clean)
    write_jsonl(out / "controls" / "math_wrong.jsonl", wrong)
    return {"controls_clean": "controls/math_clean.jsonl", "controls_wrong": "controls/math_wrong.jsonl"}


class _SceneImages:
    """Each scene's picture, drawn once into ``folder`` (scene00000.png, ...), with its pixels' hash."""

    def __init__(self, folder: Path):
        self.folder, self.files, self.pixels = folder, {}, {}

    def __call__(self, key: tuple) -> str:
        if key not in self.files:
            name = f"scene{len(self.files):05d}.png"
            image = scene_image(key)
            save_png(image, self.folder / name)
            self.files[key], self.pixels[key] = name, _pixels(image)
        return self.files[key]


def _write_vision_benchmarks(out: Path, rng: random.Random, keys: list, images: _SceneImages) -> dict:
    """POPE (two questions per picture: one present object, one absent), MMStar (Parquet, image
    bytes inline), VQA (ten answers), captions with CHAIR's objects, and the synonyms file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bench = out / "bench"
    pope, mmstar, vqa, captions = [], [], [], []
    for i, key in enumerate(keys):
        image = f"../images/{images(key)}"
        # POPE asks about a present and an absent object in every image.
        for question, label, category in (presence_question(key, rng, True), presence_question(key, rng, False)):
            pope.append({"question_id": len(pope) + 1, "image": image, "text": question, "label": label,
                         "category": category})
        record = choice_question(key, rng)
        mmstar.append({"index": i, "question": record["question"],
                       "image": {"bytes": (out / "images" / images(key)).read_bytes(), "path": images(key)},
                       "answer": record["answer"], "category": record["category"],
                       "l2_category": record["l2_category"], "meta_info": json.dumps({"scene": i})})
        question, answer, kind = vqa_question(key, rng)
        vqa.append({"question_id": i, "image": image, "question": question, "answers": human_answers(answer, rng),
                    "question_type": kind})
        captions.append({"id": f"bc{i:04d}", "image": image, "prompt": caption_prompt(rng),
                         "references": scene_references(key, rng), "objects": scene_objects(key)})
    rng.shuffle(pope)
    write_jsonl(bench / "pope_test.jsonl", pope)
    with atomic_path(bench / "mmstar_test.parquet", suffix=".parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(mmstar), tmp)
    write_jsonl(bench / "vqa_test.jsonl", vqa)
    write_json(bench / "caption_test.json", captions)
    with atomic_open(bench / "synonyms.txt") as handle:
        handle.write("".join(", ".join(words) + "\n" for words in SYNONYMS.values()))
    return {"files": {"bench_pope": "bench/pope_test.jsonl", "bench_mmstar": "bench/mmstar_test.parquet",
                      "bench_vqa": "bench/vqa_test.jsonl", "bench_caption": "bench/caption_test.json",
                      "bench_synonyms": "bench/synonyms.txt"},
            "counts": {"bench_pope": len(pope), "bench_mmstar": len(mmstar), "bench_vqa": len(vqa),
                       "bench_caption": len(captions)}}


def _write_vision(out: Path, rng: random.Random, keys: list, n_vision: int, noise_fraction: float,
                  images: _SceneImages) -> dict:
    """The picture questions: a JSON array (paths, data URIs, bare base64) and a Parquet file
    (Hugging Face's ``{bytes, path}`` image layout), each with its noise and broken records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Main source (JSON array): id, task, question, answer or captions, image. A tenth of the
    # clean items give their image as a data: URI, another tenth as bare base64 text.
    main = [{"id": f"v{i:05d}", **vision_record(k, rng), "image": f"images/{images(k)}", "objects": scene_objects(k),
             "noise": "clean"} for i, k in enumerate(keys[:n_vision])]
    main_keys = {item["id"]: k for item, k in zip(main, keys)}
    fields = {"id": "id", "text": "question", "answer": "answer", "image": "image"}
    side = max(len(IMAGE_NOISE_KINDS), round(len(main) * noise_fraction / 4))
    mismatched = _mismatched_items(main, main_keys, side, rng, fields)
    for i, item in enumerate(main):
        if i % 10 == 3:
            item["image"] = "data:image/png;base64," + _png_base64(out / item["image"])
        elif i % 10 == 7:
            item["image"] = _png_base64(out / item["image"])
    items = _interleave(main, _noisy_items(main, noise_fraction, rng, fields), rng)
    _scatter(items, _image_noise_items(main, main_keys, side, rng, fields, out, "v") + mismatched, rng)
    (out / "images" / "not_an_image.png").write_text("this file is text, not a PNG\n")
    truncated = (out / "images" / images(keys[2])).read_bytes()[:-40]
    (out / "images" / "truncated.png").write_bytes(truncated)
    for position, (name, image) in zip((11, 50, 80), [("v-broken-1", "images/missing.png"),
                                                      ("v-broken-2", "images/not_an_image.png"),
                                                      ("v-broken-3", "images/truncated.png")]):
        items.insert(position, {"id": name, "task": "caption", "question": caption_prompt(rng),
                                "captions": ["A shape."], "image": image, "noise": "broken"})
    with atomic_open(out / "vision.json") as handle:
        handle.write("[\n" + ",\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n]\n")

    # Second source (Parquet): item_id, task, query, final, refs, img as {bytes, path}: a tenth of
    # the clean items carry their bytes, the rest a path.
    extra = []
    for i, k in enumerate(keys[n_vision:]):
        record = vision_record(k, rng)
        extra.append({"item_id": f"p{i:05d}", "task": record["task"], "query": record["question"],
                      "final": record.get("answer"), "refs": record.get("captions"),
                      "img": f"images/{images(k)}", "objects": scene_objects(k), "noise": "clean"})
    extra_keys = {item["item_id"]: k for item, k in zip(extra, keys[n_vision:])}
    fields = {"id": "item_id", "text": "query", "answer": "final", "image": "img"}
    side = max(len(IMAGE_NOISE_KINDS), round(len(extra) * noise_fraction / 4))
    extra_items = _interleave(extra, _noisy_items(extra, noise_fraction, rng, fields), rng)
    _scatter(extra_items, _image_noise_items(extra, extra_keys, side, rng, fields, out, "p")
             + _mismatched_items(extra, extra_keys, side, rng, fields), rng)
    inline = {item["item_id"] for i, item in enumerate(extra) if i % 10 == 3}
    for item in extra_items:
        item.setdefault("noise_of", "")
        item.setdefault("objects", None)  # a column of every row (pyarrow takes the first row's keys)
        path = item["img"]
        item["img"] = ({"bytes": (out / path).read_bytes(), "path": Path(path).name} if item["item_id"] in inline
                       else {"bytes": None, "path": path})
    extra_items.insert(7, {"item_id": "p-broken-1", "task": "caption", "query": caption_prompt(rng), "final": None,
                           "refs": ["A shape."], "img": {"bytes": truncated, "path": "truncated.png"},
                           "noise": "broken", "noise_of": ""})
    with atomic_path(out / "vision_extra.parquet", suffix=".parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(extra_items), tmp)
    return {"files": {"vision": "vision.json", "vision_extra": "vision_extra.parquet"},
            "counts": {"vision": len(items), "vision_extra": len(extra_items)}}
