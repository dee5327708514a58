"""The embedded default data: deterministic from the seed, benchmarks disjoint from the pool."""

import base64
import hashlib
import io
import json
import re
from collections import Counter

import pyarrow.parquet as pq

from juicebox.demo_data import COLORS, SHAPES, generate

SIZES = dict(n_math=60, n_math_extra=20, n_caption=20, n_caption_extra=12, n_bench_math=30, n_bench_caption=10,
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


def caption_sources(folder):
    """The caption items of both sources, as the generator wrote them."""
    items = json.loads((folder / "captions.json").read_text())
    return items, pq.read_table(folder / "captions_extra.parquet").to_pylist()


def pool_images(folder) -> list[bytes]:
    """The bytes of every image the caption sources give (broken items aside), whatever its form."""
    items, rows = caption_sources(folder)
    values = [i["image"] for i in items if i["noise"] != "broken"]
    values += [r["img"]["bytes"] or r["img"]["path"] for r in rows if r["noise"] != "broken"]
    return [value if isinstance(value, bytes)
            else base64.b64decode(value.split(",", 1)[1]) if value.startswith("data:")
            else (folder / value).read_bytes() if value.endswith(".png")
            else base64.b64decode(value) for value in values]


def test_same_seed_same_bytes(tmp_path):
    generate(str(tmp_path / "a"), seed=3, **SIZES)
    generate(str(tmp_path / "b"), seed=3, **SIZES)
    generate(str(tmp_path / "c"), seed=4, **SIZES)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_benchmarks_are_disjoint_from_every_pool_item(tmp_path):
    manifest = generate(str(tmp_path), seed=5, **SIZES)
    assert manifest["disjoint"] == {"math_keys_shared": 0, "scene_keys_shared": 0}
    bench = [json.loads(l) for l in (tmp_path / "bench" / "math_test.jsonl").read_text().splitlines()]
    assert all(b["answer"].rsplit("#### ", 1)[1].strip().lstrip("-").isdigit() for b in bench)
    pool_questions = []
    for line in (tmp_path / "math.jsonl").read_text().splitlines():
        try:
            pool_questions.append(json.loads(line).get("question") or "")
        except json.JSONDecodeError:
            continue
    # No pool question, clean or noisy, asks about the same operands as a benchmark question
    # with the same wording, and no benchmark text appears verbatim in the pool.
    bench_text = {b["question"].lower() for b in bench}
    assert not bench_text & {q.lower() for q in pool_questions}
    # No caption benchmark image shows what a pool image shows (same pixels), in any of their forms.
    captions = json.loads((tmp_path / "bench" / "caption_test.json").read_text())
    bench_pixels = {pixels((tmp_path / "bench" / c["image"]).read_bytes()) for c in captions}
    assert len(bench_pixels) == len(captions)
    assert not bench_pixels & {pixels(image) for image in pool_images(tmp_path)}
    assert all(len(c["references"]) >= 3 for c in captions)


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


def test_caption_prompts_name_nothing_the_image_shows(tmp_path):
    generate(str(tmp_path), seed=7, **SIZES)
    items, rows = caption_sources(tmp_path)
    bench = json.loads((tmp_path / "bench" / "caption_test.json").read_text())
    prompts = [i["description"] for i in items] + [r["scene"] for r in rows] + [b["prompt"] for b in bench]
    named = re.compile(r"\b(" + "|".join(COLORS + SHAPES) + r")s?\b", re.IGNORECASE)
    assert not [p for p in prompts if named.search(p)]
    # The references name the shapes and colours the image shows.
    assert all(named.search(ref) for b in bench for ref in b["references"])


def test_caption_noise_and_every_image_form(tmp_path):
    from PIL import Image

    generate(str(tmp_path), seed=8, **SIZES)
    items, rows = caption_sources(tmp_path)
    for source in (items, rows):
        kinds = Counter(item["noise"] for item in source)
        assert kinds["tiny_image"] and kinds["extreme_aspect"] and kinds["blank_image"] and kinds["broken"], kinds
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
