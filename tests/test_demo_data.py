"""The embedded default data: deterministic from the seed, benchmarks disjoint from the pool."""

import hashlib
import json
import re

from juicebox.demo_data import generate

SIZES = dict(n_math=60, n_math_extra=20, n_caption=20, n_caption_extra=12, n_bench_math=30, n_bench_caption=10,
             noise_fraction=0.3)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def numbers(text):
    return tuple(sorted(int(n) for n in re.findall(r"\d+", text)))


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
    captions = json.loads((tmp_path / "bench" / "caption_test.json").read_text())
    pool_scenes = {c["description"] for c in json.loads((tmp_path / "captions.json").read_text())}
    assert not {c["prompt"] for c in captions} & pool_scenes
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
