"""Running the real Data-Juicer: op errors fail naming the op, no runtime installs, per-op counts."""

from pathlib import Path

import pytest
import yaml

from juicebox import dj


def records():
    texts = ["<b>What is 2 plus 3?</b>", "What is 4 plus 5?", "What is 4 plus 5?", "x", "Tell me 7 times 8."]
    return [{"id": f"r{i}", "task": "math", "prompt": t, "answer": "1", "meta": {"k": [i]}}
            for i, t in enumerate(texts)]


def recipe(tmp_path, process, **extra):
    path = tmp_path / "recipe.yaml"
    # An upstream recipe carries its own paths and np: Juicebox replaces them.
    path.write_text(yaml.safe_dump({"project_name": "t", "dataset_path": "/nowhere/in.jsonl",
                                    "export_path": "/nowhere/out.jsonl", "np": 8, "process": process, **extra}))
    return str(path)


def test_process_counts_per_op_and_carries_cleaned_text(tmp_path):
    path = recipe(tmp_path, [{"clean_html_mapper": None}, {"text_length_filter": {"min_len": 5}},
                             {"document_deduplicator": {"lowercase": True}}])
    kept, counts = dj.process(records(), path, str(tmp_path / "scratch"), {"np": 1})
    assert counts == [{"op": "clean_html_mapper", "in": 5, "kept": 5},
                      {"op": "text_length_filter", "in": 5, "kept": 4},
                      {"op": "document_deduplicator", "in": 4, "kept": 3}]
    assert [r["id"] for r in kept] == ["r0", "r1", "r4"]
    assert kept[0]["prompt"] == "What is 2 plus 3?" and kept[0]["meta"] == {"k": [0]}
    assert not list((tmp_path / "scratch").iterdir())  # Data-Juicer's scratch work dir is removed


def test_an_op_that_raises_fails_with_its_name(tmp_path):
    # Upstream's default (skip_op_error: true) would skip this op and carry on.
    path = recipe(tmp_path, [{"text_length_filter": {"min_len": 1}},
                             {"replace_content_mapper": {"pattern": ["a", "b"], "repl": ["x"]}}],
                  skip_op_error=True)
    with pytest.raises(dj.OpFailed, match="op #1 'replace_content_mapper' failed"):
        dj.process(records(), path, str(tmp_path / "scratch"), {"np": 1})


def test_runtime_package_install_is_refused(tmp_path):
    # chinese_convert_mapper needs opencc, which is not pinned: upstream would pip/uv-install it now.
    path = recipe(tmp_path, [{"chinese_convert_mapper": {"mode": "s2t"}}])
    with pytest.raises(Exception) as err:
        dj.process(records(), path, str(tmp_path / "scratch"), {"np": 1})
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("wanted to install 'opencc'" in m for m in chain), chain


def test_analyze_returns_stats_in_pool_order(tmp_path):
    path = recipe(tmp_path, [{"clean_html_mapper": None}, {"text_length_filter": {"min_len": 5}},
                             {"words_num_filter": {"min_num": 1}}])
    stats = dj.analyze(records(), path, str(tmp_path / "scratch"), 1)
    assert [s["id"] for s in stats] == [f"r{i}" for i in range(5)]
    assert stats[1]["stats"]["text_len"] == len("What is 4 plus 5?")
    assert stats[1]["stats"]["num_words"] == 3  # Data-Juicer drops "4" and "5?"


def test_the_probe_leaves_out_ops_that_only_run_on_ray(tmp_path):
    # A recipe for dj.executor: ray; the Analyzer runs on the default executor, which cannot run this op.
    path = recipe(tmp_path, [{"text_length_filter": {"min_len": 5}}, {"ray_document_deduplicator": None}])
    stats = dj.analyze(records(), path, str(tmp_path / "scratch"), 1)
    assert [s["stats"] for s in stats] == [{"text_len": len(r["prompt"])} for r in records()]


def test_demo_recipe_gives_what_upstream_dj_process_gives(tmp_path):
    """The demo recipe run by Juicebox keeps exactly the records upstream's own CLI keeps."""
    import json
    import subprocess
    import sys

    from conftest import ROOT
    from juicebox.demo_data import generate
    from juicebox.io import read_jsonl, write_jsonl
    from juicebox.pool import validate_sources
    from juicebox.sources import SourceSpec

    generate(str(tmp_path / "demo"), seed=9, n_math=60, n_math_extra=20, n_vision=20, n_vision_extra=12,
             n_bench_math=10, n_bench_vision=10, noise_fraction=0.4)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    specs = [SourceSpec.from_config({**s, "path": s["path"].replace("results/demo_data", str(tmp_path / "demo"))})
             for s in config["defaults"]["sources"]]
    pool = [r for rs in validate_sources(specs, 0.1, tmp_path / "store").by_source.values() for r in rs]
    recipe_path = str(ROOT / "config" / "recipes" / "demo_text.yaml")

    kept, _ = dj.process(pool, recipe_path, str(tmp_path / "scratch"), {"np": 1})

    write_jsonl(tmp_path / "view.jsonl", dj.dj_view(pool, "text"))
    cli = Path(sys.executable).parent / "dj-process"
    subprocess.run([str(cli), "--config", recipe_path, "--dataset_path", str(tmp_path / "view.jsonl"),
                    "--export_path", str(tmp_path / "upstream" / "out.jsonl")], check=True, capture_output=True,
                   cwd=tmp_path)
    upstream = read_jsonl(tmp_path / "upstream" / "out.jsonl")
    assert len(kept) < len(pool)
    assert [r["id"] for r in kept] == [r["id"] for r in upstream]
    assert [r["prompt"] for r in kept] == [r["text"] for r in upstream], json.dumps(kept[:2])


def test_demo_vision_recipe_drops_each_kind_of_image_noise_with_its_op(tmp_path):
    """The VLM experiment's sources and recipe on generated data: every image-noise record is dropped
    by the op meant for its kind, every text-junk record by a text op, and no clean record at all."""
    from collections import Counter

    from conftest import ROOT
    from juicebox.demo_data import generate
    from juicebox.pool import validate_sources
    from juicebox.sources import SourceSpec

    generate(str(tmp_path / "demo"), seed=9, n_math=20, n_math_extra=10, n_vision=40, n_vision_extra=12,
             n_bench_math=10, n_bench_vision=10, noise_fraction=0.4)
    vlm = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["experiments"]["vlm"]
    specs = [SourceSpec.from_config({**s, "path": s["path"].replace("results/demo_data", str(tmp_path / "demo"))})
             for s in vlm["sources"]]
    pool = [r for rs in validate_sources(specs, 0.1, tmp_path / "store").by_source.values() for r in rs]
    noise = Counter(r["meta"]["noise"] for r in pool)

    kept, counts = dj.process(pool, str(ROOT / vlm["recipe"]), str(tmp_path / "scratch"), {"np": 1})
    dropped = {c["op"]: c["in"] - c["kept"] for c in counts}
    assert (dropped["image_aspect_ratio_filter"], dropped["image_shape_filter"], dropped["image_size_filter"]) == \
        (noise["extreme_aspect"], noise["tiny_image"], noise["blank_image"]) and noise["blank_image"] > 0
    left = Counter(r["meta"]["noise"] for r in kept)
    # Mismatched pictures pass every op: only a model can see that the text is not about the image.
    assert left["clean"] == noise["clean"] and left["mismatched_image"] == noise["mismatched_image"] > 0
    assert set(left) <= {"clean", "exact_dup", "near_dup", "wrong_answer", "mismatched_image"}, left


def test_a_mapper_that_splits_records_gets_unique_ids(tmp_path):
    path = recipe(tmp_path, [{"text_chunk_mapper": {"max_len": 10, "split_pattern": None}}])
    kept, counts = dj.process(records()[:2], path, str(tmp_path / "scratch"), {"np": 1})
    assert counts[0]["in"] == 2 and counts[0]["kept"] == len(kept) > 2
    assert len({r["id"] for r in kept}) == len(kept)
    assert [r["id"] for r in kept][:2] == ["r0", "r0#s1"]


@pytest.mark.server
def test_ray_executor_keeps_and_counts_what_the_default_executor_does(tmp_path):
    """dj.executor: ray on a private local Ray (2 CPUs, no dashboard): the same per-op counts and the
    same kept records in the same order, with the pool split into 4 Ray blocks."""
    import os

    import ray

    pool = [{**r, "id": f"{r['id']}-{copy}", "prompt": r["prompt"] + " and more" * (copy % 3)}
            for copy in range(6) for r in records()]
    path = recipe(tmp_path, [{"clean_html_mapper": None}, {"text_length_filter": {"min_len": 5}},
                             {"words_num_filter": {"min_num": 5}}], override_num_blocks=4)
    default = dj.process(pool, path, str(tmp_path / "scratch"), {"np": 1})
    on_ray = dj.process(pool, path, str(tmp_path / "scratch"), {"executor": "ray", "np": 2, "ray_address": "local"})
    assert on_ray == default
    kept, counts = on_ray
    # "x" is too short; numbers are no words
    assert counts == [{"op": "clean_html_mapper", "in": 30, "kept": 30},
                      {"op": "text_length_filter", "in": 30, "kept": 28},
                      {"op": "words_num_filter", "in": 28, "kept": 18}]
    assert [r["id"] for r in kept][:6] == ["r0-1", "r1-1", "r2-1", "r4-1", "r0-2", "r1-2"]
    assert kept[0]["prompt"] == "What is 2 plus 3? and more" and kept[0]["meta"] == {"k": [0]}
    # The local Ray is stopped and this process is no longer marked a Ray job.
    assert not ray.is_initialized() and "RAY_JOB" not in os.environ
    assert not list((tmp_path / "scratch").iterdir())


def test_ray_executor_refuses_ops_without_ray_support_before_starting_ray(tmp_path):
    path = recipe(tmp_path, [{"text_length_filter": {"min_len": 5}}, {"document_deduplicator": None}])
    with pytest.raises(ValueError, match=r"\['document_deduplicator'\] do not run on Data-Juicer's Ray executor; "
                                         r"use their ray_\* counterparts"):
        dj.process(records(), path, str(tmp_path / "scratch"), {"executor": "ray", "np": 1, "ray_address": "local"})


@pytest.mark.server
def test_on_ray_an_op_that_raises_fails_with_its_name_and_workers_install_nothing(tmp_path, monkeypatch):
    """A (custom) op reaches for a missing package only on the Ray workers: upstream would pip/uv-install
    it there, and skip_op_error: true would then skip the op."""
    package = tmp_path / "jb_custom_ops"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from data_juicer.ops.base_op import OPERATORS, Mapper\n"
        "from data_juicer.utils.lazy_loader import LazyLoader\n"
        "missing = LazyLoader('jb_no_such_package')\n\n\n"
        "@OPERATORS.register_module('jb_lazy_mapper')\n"
        "class JbLazyMapper(Mapper):\n"
        "    def process_single(self, sample):\n"
        "        missing.version\n"
        "        return sample\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # were the refusal missing, the install would fail here instead of
    monkeypatch.setenv("UV_OFFLINE", "1")  # changing the venv (the local Ray's workers inherit these)
    path = recipe(tmp_path, [{"text_length_filter": {"min_len": 1}}, {"jb_lazy_mapper": None}],
                  skip_op_error=True, custom_operator_paths=[str(package)])
    with pytest.raises(dj.OpFailed, match=r"(?s)op #1 'jb_lazy_mapper' failed: .*Data-Juicer wanted to install "
                                          r"'jb.no.such.package' at run time"):
        dj.process(records(), path, str(tmp_path / "scratch"), {"executor": "ray", "np": 1, "ray_address": "local"})


def test_image_ops_are_probed_refined_plotted_and_counted(tmp_path, monkeypatch):
    """Data-Juicer's image ops that need no model, on a pool with normal, tiny, extreme and heavy
    images, relative image paths, a record with two images and one with none: per-image stats come
    back as lists, k-sigma refines each argument from its own stat (sizes in bytes), every image stat
    gets a histogram, and each op's drops are counted."""
    import random

    from PIL import Image

    from conftest import shape_image
    from juicebox.ksigma import KSigmaSettings, refine_recipe, stat_columns
    from juicebox.plots import plot_histograms, thresholds

    monkeypatch.chdir(tmp_path)  # the pool's paths are relative to the workflow's directory
    normal = [str(shape_image(Path("imgs") / f"{colour}.png", colour, shape))
              for colour, shape in [("red", "circle"), ("blue", "square"), ("green", "triangle")]]
    tiny, wide, tall = (str(shape_image(Path(f"imgs/{name}.png"), size=size))
                        for name, size in [("tiny", (8, 8)), ("wide", (200, 10)), ("tall", (10, 200))])
    heavy = Path("imgs/noise.png")  # random pixels: a large file
    rng = random.Random(0)
    Image.frombytes("RGB", (48, 48), bytes(rng.randrange(256) for _ in range(48 * 48 * 3))).save(heavy)
    images = {"n0": [normal[0]], "n1": [normal[1]], "tiny": [tiny], "wide": [wide], "tall": [tall],
              "two": [normal[2], tiny], "heavy": [str(heavy)], "n2": [normal[2]], "none": []}
    pool = [{"id": rid, "task": "caption", "prompt": "Describe the image.", "references": ["x"], "images": imgs,
             "meta": {}} for rid, imgs in images.items()]
    path = recipe(tmp_path, [{"image_aspect_ratio_filter": {"min_ratio": 0.5, "max_ratio": 2.0}},
                             {"image_shape_filter": {"min_width": 16, "min_height": 16, "any_or_all": "all"}},
                             {"image_size_filter": {"max_size": "2KB"}}])

    stats = {s["id"]: s["stats"] for s in dj.analyze(pool, path, "scratch", 1)}
    assert stats["two"]["image_width"] == [48, 8] and stats["wide"]["aspect_ratios"] == [20.0]
    assert stats["heavy"]["image_sizes"][0] > 2048 > stats["n0"]["image_sizes"][0]
    columns = stat_columns(list({"stats": v} for v in stats.values()))
    assert {"image_width", "image_height", "aspect_ratios", "image_sizes"} <= set(columns)
    assert len(columns["image_width"]) == 8  # the record without images has no values

    written = yaml.safe_load(Path(path).read_text())
    refined, changes = refine_recipe(written, columns, KSigmaSettings(k=1.0), dj.op_signature)
    by_arg = {(c["op"], c["arg"]): c for c in changes}
    assert {c["stat"] for c in changes} == {"aspect_ratios", "image_width", "image_height", "image_sizes"}
    size = by_arg["image_size_filter", "max_size"]
    assert size["before"] == 2048 and isinstance(size["after"], int) and size["after"] <= 2048
    assert refined["process"][2]["image_size_filter"]["max_size"] == str(size["after"])  # whole bytes, as text
    assert by_arg["image_shape_filter", "min_width"]["after"] >= 16  # a written bound is never loosened

    figures = plot_histograms(columns, thresholds(written, KSigmaSettings(), dj.op_signature),
                              thresholds(refined, KSigmaSettings(), dj.op_signature), "hist")
    assert {Path(f).stem for f in figures} >= {"image_width", "image_height", "aspect_ratios", "image_sizes"}

    kept, counts = dj.process(pool, path, "scratch", {"np": 1})
    assert counts == [{"op": "image_aspect_ratio_filter", "in": 9, "kept": 7},
                      {"op": "image_shape_filter", "in": 7, "kept": 5},
                      {"op": "image_size_filter", "in": 5, "kept": 4}]
    assert [r["id"] for r in kept] == ["n0", "n1", "n2", "none"] and kept[0]["images"] == [normal[0]]
    Path("refined.yaml").write_text(yaml.safe_dump(refined))
    kept, counts = dj.process(pool, "refined.yaml", "scratch", {"np": 1})  # Data-Juicer reads the refined sizes
    assert [c["op"] for c in counts] == ["image_aspect_ratio_filter", "image_shape_filter", "image_size_filter"]
    assert {"n0", "n1", "n2"} <= {r["id"] for r in kept}
