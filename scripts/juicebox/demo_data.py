"""The embedded default data: a verifiable math task and a caption task, with realistic noise.

Everything is generated from one seed. Each item has an underlying *key* (the operation and
operands of a math problem, the objects of a caption scene); the held-out benchmark items are
drawn first and their keys are reserved, so no pool item, clean or noisy, shares a key with a
benchmark item. That makes the splits disjoint by construction, not only by text.

The caption task is a vision task: its prompts are generic ("Describe the image.") and name
nothing, so the answer (the shapes, colours and where they are, which the references name) is only
in the image. Its images come in every form a source may use: paths, ``data:`` URIs and bare
base64 text (JSON source), and the Hugging Face ``{bytes, path}`` layout (Parquet source).

Noise for the data stages to find (recorded in ``meta.noise`` so its removal can be measured):
markup and junk characters, repetition, overlong junk, exact and near duplicates, wrong answers;
for captions also images the image ops catch: tiny (8x8), extreme aspect ratios (200x10, 10x200)
and blank ones. Broken records that validation must quarantine are written too (``meta`` cannot
carry a label for those; the pool's ``rejected.jsonl`` shows them), among them images that are
missing, not images at all, or truncated.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

from .io import atomic_open, atomic_path, write_json, write_jsonl

NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
ITEMS = ["apples", "books", "coins", "marbles", "pencils", "stamps", "shells", "cards"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
SHAPES = ["circle", "square", "triangle", "star"]
SIZES = ["small", "large"]
POSITIONS = ["left", "right", "top", "bottom"]
RGB = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 160, 60), "yellow": (230, 210, 40),
       "purple": (140, 40, 160), "orange": (240, 140, 20), "black": (10, 10, 10), "white": (250, 250, 250)}
JUNK = "¤•▓©®§¶†‡±×÷¬¦"


# --- math --------------------------------------------------------------------------------

def math_key(rng: random.Random) -> tuple:
    """An underlying problem: (operation, a, b)."""
    op = rng.choice(["add", "sub", "mul"])
    if op == "mul":
        return op, rng.randint(2, 12), rng.randint(2, 12)
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    return (op, max(a, b), min(a, b)) if op == "sub" else (op, a, b)


def math_answer(key: tuple) -> int:
    """The gold answer of a problem key."""
    op, a, b = key
    return a + b if op == "add" else a - b if op == "sub" else a * b


def math_question(key: tuple, rng: random.Random) -> str:
    """A short word problem for a key, in one of several phrasings."""
    op, a, b = key
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if op == "add":
        forms = [f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
                 f"What is {a} plus {b}?",
                 f"A box holds {a} {item}. Someone adds {b} {item}. How many {item} are in the box?"]
    elif op == "sub":
        forms = [f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
                 f"What is {a} minus {b}?",
                 f"There are {a} {item} on a shelf. {b} are taken. How many {item} remain?"]
    else:
        forms = [f"{name} buys {a} bags with {b} {item} in each. How many {item} is that in total?",
                 f"What is {a} times {b}?",
                 f"A tray has {a} rows of {b} {item}. How many {item} are on the tray?"]
    return rng.choice(forms)


def math_solution(key: tuple) -> str:
    """A GSM8K-style worked answer ending in ``#### <number>``."""
    op, a, b = key
    sign = {"add": "+", "sub": "-", "mul": "*"}[op]
    value = math_answer(key)
    return f"{a} {sign} {b} = {value}.\n#### {value}"


# --- captions ----------------------------------------------------------------------------

def scene_key(rng: random.Random) -> tuple:
    """An underlying scene: two distinct (size, color, shape) objects and where the first is."""
    first = (rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES))
    second = (rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES))
    while second[1:] == first[1:]:
        second = (rng.choice(SIZES), rng.choice(COLORS), rng.choice(SHAPES))
    return first, second, rng.choice(POSITIONS)


CAPTION_PROMPTS = ["Describe the image.", "Write a one-sentence caption for the picture.",
                   "What does this picture show?", "Caption this image.", "Describe what you see in the picture."]
BACKGROUND = (200, 200, 200)


def caption_prompt(rng: random.Random) -> str:
    """A generic caption instruction: it names nothing, the answer is only in the image."""
    return rng.choice(CAPTION_PROMPTS)


def scene_references(key: tuple, rng: random.Random) -> list[str]:
    """Three to five human-like captions of a scene."""
    (s1, c1, h1), (s2, c2, h2), pos = key
    where = {"left": "to the left of", "right": "to the right of", "top": "above", "bottom": "below"}[pos]
    refs = [f"A {s1} {c1} {h1} {where} a {s2} {c2} {h2}.",
            f"A {c1} {h1} and a {c2} {h2} on a plain background.",
            f"There is a {s2} {c2} {h2} with a {s1} {c1} {h1} {where} it.",
            f"Two shapes: a {c1} {h1} and a {c2} {h2}.",
            f"The {c1} {h1} is {where} the {c2} {h2}."]
    rng.shuffle(refs)
    return refs[: rng.randint(3, 5)]


def draw_scene(key: tuple, path: Path) -> None:
    """A 64x64 PNG of the scene."""
    save_png(scene_image(key), path)


def save_png(image, path: Path) -> None:
    """Write a PIL image as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def scene_image(key: tuple):
    """The scene drawn on a 64x64 RGB PIL image."""
    from PIL import Image, ImageDraw

    (s1, c1, h1), (s2, c2, h2), pos = key
    image = Image.new("RGB", (64, 64), BACKGROUND)
    draw = ImageDraw.Draw(image)
    centers = {"left": ((16, 32), (48, 32)), "right": ((48, 32), (16, 32)),
               "top": ((32, 16), (32, 48)), "bottom": ((32, 48), (32, 16))}[pos]
    for (size, color, shape), (cx, cy) in zip(((s1, c1, h1), (s2, c2, h2)), centers):
        r = 12 if size == "large" else 7
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=RGB[color])
        elif shape == "square":
            draw.rectangle(box, fill=RGB[color])
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=RGB[color])
        else:
            draw.polygon([(cx, cy - r), (cx + r // 3, cy - r // 3), (cx + r, cy), (cx + r // 3, cy + r // 3),
                          (cx, cy + r), (cx - r // 3, cy + r // 3), (cx - r, cy), (cx - r // 3, cy - r // 3)],
                         fill=RGB[color])
    return image


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


def _noisy_items(clean: list[dict], noise_fraction: float, rng: random.Random, text_key: str,
                 answer_key: str | None, id_key: str) -> list[dict]:
    """Append noisy variants of random clean items; each carries ``noise`` and ``noise_of``."""
    kinds = NOISE_KINDS if answer_key else [k for k in NOISE_KINDS if k != "wrong_answer"]
    out = []
    for n in range(int(len(clean) * noise_fraction)):
        base = rng.choice(clean)
        kind = kinds[n % len(kinds)]
        item = json.loads(json.dumps(base))
        item[id_key] = f"{base[id_key]}-n{n}"
        item["noise"], item["noise_of"] = kind, base[id_key]
        if kind == "wrong_answer":
            item[answer_key] = str(int(base[answer_key]) + rng.choice([-3, -2, -1, 1, 2, 3, 10]))
        elif kind != "exact_dup":
            item[text_key] = add_text_noise(base[text_key], kind, rng)
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


def _image_noise_items(clean: list[dict], keys: dict[str, tuple], noise_fraction: float, rng: random.Random,
                       image_key: str, id_key: str, out: Path, tag: str) -> list[dict]:
    """Copies of random clean items with a spoiled image (a few of each kind, at least one); each
    carries ``noise`` and ``noise_of``. The images are written to ``out/images/``."""
    out_items = []
    for n in range(max(len(IMAGE_NOISE_KINDS), round(len(clean) * noise_fraction / 4))):
        base = rng.choice(clean)
        kind = IMAGE_NOISE_KINDS[n % len(IMAGE_NOISE_KINDS)]
        name = f"images/{tag}_{kind}{n:03d}.png"
        save_png(noisy_image(keys[base[id_key]], kind, n), out / name)
        item = json.loads(json.dumps(base))
        item[id_key], item[image_key] = f"{base[id_key]}-i{n}", name
        item["noise"], item["noise_of"] = kind, base[id_key]
        out_items.append(item)
    return out_items


def _png_base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _interleave(clean: list[dict], noisy: list[dict], rng: random.Random) -> list[dict]:
    items = clean + noisy
    rng.shuffle(items)
    return items


# --- writers -----------------------------------------------------------------------------

def _unique_keys(make, n: int, reserved: set, rng: random.Random) -> list:
    keys = []
    while len(keys) < n:
        key = make(rng)
        if key not in reserved:
            reserved.add(key)
            keys.append(key)
    return keys


def generate(outdir: str, seed: int, n_math: int, n_math_extra: int, n_caption: int, n_caption_extra: int,
             n_bench_math: int, n_bench_caption: int, noise_fraction: float) -> dict:
    """Write the demo sources and benchmark splits under ``outdir``; return a manifest."""
    out = Path(outdir)
    rng = random.Random(seed)
    used_math: set = set()
    used_scene: set = set()
    # Benchmarks first: their keys are reserved before any pool item is drawn.
    bench_math_keys = _unique_keys(math_key, n_bench_math, used_math, rng)
    bench_scene_keys = _unique_keys(scene_key, n_bench_caption, used_scene, rng)
    math_keys = _unique_keys(math_key, n_math + n_math_extra, used_math, rng)
    scene_keys = _unique_keys(scene_key, n_caption + n_caption_extra, used_scene, rng)

    bench_math = [{"id": f"bm{i:04d}", "question": math_question(k, rng), "answer": math_solution(k)}
                  for i, k in enumerate(bench_math_keys)]
    write_jsonl(out / "bench" / "math_test.jsonl", bench_math)

    image_dir = out / "images"
    scene_files: dict[tuple, str] = {}

    def image_for(key: tuple) -> str:
        if key not in scene_files:
            name = f"scene{len(scene_files):05d}.png"
            draw_scene(key, image_dir / name)
            scene_files[key] = name
        return scene_files[key]

    # Captions draw their prompts, inline forms and image noise from their own generator, so the
    # math data (drawn from ``rng`` after the caption benchmark) does not depend on them.
    vision_rng = random.Random(f"{seed}:captions")
    bench_caption = [{"id": f"bc{i:04d}", "image": f"../images/{image_for(k)}", "prompt": caption_prompt(vision_rng),
                      "references": scene_references(k, rng)} for i, k in enumerate(bench_scene_keys)]
    write_json(out / "bench" / "caption_test.json", bench_caption)

    # Math, main source (JSONL): id, question, answer, difficulty.
    math_clean = [{"id": f"m{i:05d}", "question": math_question(k, rng), "answer": str(math_answer(k)),
                   "difficulty": len(str(math_answer(k))), "noise": "clean"}
                  for i, k in enumerate(math_keys[:n_math])]
    math_items = _interleave(math_clean, _noisy_items(math_clean, noise_fraction, rng, "question", "answer", "id"),
                             rng)
    lines = [json.dumps(item, ensure_ascii=False) for item in math_items]
    broken = [
        '{"id": "m-broken-1", "question": "What is 3 plus 4?", "answer": "7"',  # unparseable
        json.dumps({"id": "m-broken-2", "answer": "5", "noise": "broken"}),  # missing prompt
        json.dumps({"id": "m-broken-3", "question": "What is 9 minus 2?", "answer": {"value": 7},
                    "noise": "broken"}),  # wrong type
        json.dumps({"id": "m-broken-4", "question": "   ", "answer": "1", "noise": "broken"}),  # empty prompt
        json.dumps({"id": math_clean[0]["id"], "question": "What is 1 plus 1?", "answer": "2",
                    "noise": "broken"}),  # duplicate id
    ]
    for offset, line in zip(range(37, 10_000, 97), broken):
        lines.insert(min(offset, len(lines)), line)
    with atomic_open(out / "math.jsonl") as handle:
        handle.write("\n".join(lines) + "\n")

    # Math, second source (CSV) with other field names: uid, problem, final.
    import csv

    extra = [{"uid": f"x{i:05d}", "problem": math_question(k, rng), "final": str(math_answer(k)), "noise": "clean"}
             for i, k in enumerate(math_keys[n_math:])]
    extra_items = _interleave(extra, _noisy_items(extra, noise_fraction, rng, "problem", "final", "uid"), rng)
    with atomic_open(out / "math_extra.csv", "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uid", "problem", "final", "noise", "noise_of"])
        for i, item in enumerate(extra_items):
            writer.writerow([item["uid"], item["problem"], item["final"], item["noise"], item.get("noise_of", "")])
            if i == 20:
                writer.writerow(["x-broken-1", "What is 2 plus 2?", "4", "broken", "", "extra-column"])

    # Captions, main source (JSON array): id, description, captions, image. A tenth of the clean
    # items give their image as a data: URI, another tenth as bare base64 text.
    captions = [{"id": f"c{i:05d}", "description": caption_prompt(vision_rng), "captions": scene_references(k, rng),
                 "image": f"images/{image_for(k)}", "noise": "clean"} for i, k in enumerate(scene_keys[:n_caption])]
    caption_keys = {item["id"]: k for item, k in zip(captions, scene_keys)}
    for i, item in enumerate(captions):
        if i % 10 == 3:
            item["image"] = "data:image/png;base64," + _png_base64(out / item["image"])
        elif i % 10 == 7:
            item["image"] = _png_base64(out / item["image"])
    caption_items = _interleave(
        captions, _noisy_items(captions, noise_fraction, rng, "description", None, "id"), rng)
    image_noise = _image_noise_items(captions, caption_keys, noise_fraction, vision_rng, "image", "id", out, "c")
    for item in image_noise:
        caption_items.insert(vision_rng.randrange(len(caption_items) + 1), item)
    (out / "images" / "not_an_image.png").write_text("this file is text, not a PNG\n")
    truncated = (out / "images" / image_for(scene_keys[2])).read_bytes()[:-40]
    (out / "images" / "truncated.png").write_bytes(truncated)
    for position, (name, image) in zip((11, 50, 80), [("c-broken-1", "images/missing.png"),
                                                      ("c-broken-2", "images/not_an_image.png"),
                                                      ("c-broken-3", "images/truncated.png")]):
        caption_items.insert(position, {"id": name, "description": caption_prompt(vision_rng),
                                        "captions": ["A shape."], "image": image, "noise": "broken"})
    with atomic_open(out / "captions.json") as handle:
        handle.write("[\n" + ",\n".join(json.dumps(i, ensure_ascii=False) for i in caption_items) + "\n]\n")

    # Captions, second source (Parquet): item_id, scene, refs, img. The images in the Hugging Face
    # Image layout {bytes, path}: a tenth of the clean items carry their bytes, the rest a path.
    import pyarrow as pa
    import pyarrow.parquet as pq

    cap_extra = [{"item_id": f"p{i:05d}", "scene": caption_prompt(vision_rng), "refs": scene_references(k, rng),
                  "img": f"images/{image_for(k)}", "noise": "clean"}
                 for i, k in enumerate(scene_keys[n_caption:])]
    extra_keys = {item["item_id"]: k for item, k in zip(cap_extra, scene_keys[n_caption:])}
    cap_extra_items = _interleave(cap_extra, _noisy_items(cap_extra, noise_fraction, rng, "scene", None, "item_id"),
                                  rng)
    for item in _image_noise_items(cap_extra, extra_keys, noise_fraction, vision_rng, "img", "item_id", out, "p"):
        cap_extra_items.insert(vision_rng.randrange(len(cap_extra_items) + 1), item)
    inline = {item["item_id"] for i, item in enumerate(cap_extra) if i % 10 == 3}
    for item in cap_extra_items:
        item.setdefault("noise_of", "")
        path = item["img"]
        item["img"] = ({"bytes": (out / path).read_bytes(), "path": Path(path).name} if item["item_id"] in inline
                       else {"bytes": None, "path": path})
    cap_extra_items.insert(7, {"item_id": "p-broken-1", "scene": caption_prompt(vision_rng), "refs": ["A shape."],
                               "img": {"bytes": truncated, "path": "truncated.png"}, "noise": "broken",
                               "noise_of": ""})
    with atomic_path(out / "captions_extra.parquet", suffix=".parquet") as tmp:
        pq.write_table(pa.Table.from_pylist(cap_extra_items), tmp)

    manifest = {
        "seed": seed,
        "files": {"math": "math.jsonl", "math_extra": "math_extra.csv", "captions": "captions.json",
                  "captions_extra": "captions_extra.parquet", "bench_math": "bench/math_test.jsonl",
                  "bench_caption": "bench/caption_test.json"},
        "counts": {"math": len(lines), "math_extra": len(extra_items) + 1, "captions": len(caption_items),
                   "captions_extra": len(cap_extra_items), "bench_math": len(bench_math),
                   "bench_caption": len(bench_caption), "images": len(scene_files)},
        "disjoint": {"math_keys_shared": len(set(bench_math_keys) & set(math_keys)),
                     "scene_keys_shared": len(set(bench_scene_keys) & set(scene_keys))},
    }
    if any(manifest["disjoint"].values()):
        raise AssertionError(f"benchmark and pool keys overlap: {manifest['disjoint']}")
    write_json(out / "manifest.json", manifest)
    return manifest
