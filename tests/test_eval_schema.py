"""results/eval.json against its JSON Schema (docs/eval.schema.json): a document built by
juicebox.summary from hand-written evaluation files (two experiments, one with two DPO rounds, a
sweep) validates, and a field that drifts is named by its path. The workflow's own eval.json is
checked by rule eval_summary on every run, and by tests/test_workflow.py."""

import copy
from pathlib import Path

import pytest

from conftest import ROOT
from juicebox import layout
from juicebox.io import read_json, write_json, write_jsonl
from juicebox.summary import SCHEMA_VERSION, build, check_schema

SCHEMA = ROOT / "docs" / "eval.schema.json"
BENCHMARK = {"name": "bm", "type": "vqa", "path": "bench.jsonl", "prompt_template": None}


def write_variant(root, exp, variant, scores, round_=1):
    where = {"root": root, "exp": exp, "bench": "bm", "round": round_}
    write_jsonl(Path(layout.eval_path("predictions", variant, **where)),
                [{"id": f"q{i}", "score": {"acc": s}, "stats": {"items": 1, "acc": s}} for i, s in enumerate(scores)])
    model = layout.path("sft", "model", exp=exp)
    adapter = layout.path("train", "adapter", exp=exp, round=round_) if variant == "dpo" else None
    write_json(Path(layout.eval_path("metrics", variant, **where)), {
        "n": len(scores), "metrics": {"acc": sum(scores) / len(scores)}, "ci95": {"acc": [0.0, 1.0]},
        "lower_is_better": [], "samples_per_item": {"min": 1, "max": 1},
        "bootstrap": {"method": "percentile", "over": "items", "n_resamples": 1000, "alpha": 0.05, "seed": 0},
        "benchmark": BENCHMARK, "variant": variant, "model": model, "adapter": adapter, "blank_images": False,
        "engine": {"type": "hf", "model": model, "adapter": adapter, "batch_size": 8},
        "sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 16, "seed": 0}})


@pytest.fixture
def summary(tmp_path):
    scores = {"base": [0, 0, 1, 0], "sft": [0, 1, 1, 0], "dpo": [1, 1, 1, 0]}
    for exp in ("a", "b"):
        for variant, values in scores.items():
            write_variant(tmp_path, exp, variant, values)
    write_variant(tmp_path, "a", "dpo", [1, 1, 1, 1], round_=2)
    results = {exp: {"bm": list(scores)} for exp in ("a", "b")}
    points = {"a": {"train.beta": 0.1}, "b": {"train.beta": 0.2}}
    sweeps = {"s": {"base": "a", "keys": ["train.beta"], "points": points}}
    return build(results, {"benchmark": "bm", "metric": "acc"}, {"seed": 0}, 0, repo=ROOT, root=tmp_path,
                 rounds={"a": [2], "b": []}, sweeps=sweeps, pools={"a": "a", "b": "a"})


def test_a_built_summary_is_valid_and_explains_itself(summary):
    check_schema(summary, SCHEMA)
    assert summary["schema_version"] == SCHEMA_VERSION == read_json(SCHEMA)["properties"]["schema_version"]["const"]
    dpo = summary["experiments"]["a"]["benchmarks"]["bm"]["dpo"]
    # what produced the figure, beside it: model, adapter, engine, sampling, bootstrap
    assert dpo["adapter"] == layout.path("train", "adapter", exp="a", round=1)
    assert dpo["engine"]["type"] == "hf" and dpo["sampling"]["temperature"] == 0.0 and dpo["bootstrap"]["seed"] == 0
    assert summary["experiments"]["a"]["configs"]["bm"] == BENCHMARK
    assert [p["round"] for p in summary["experiments"]["a"]["rounds"]["bm"]["acc"]] == [0, 1, 2]


@pytest.mark.parametrize("change, where", [
    (lambda d: d.pop("schema_version"), r"\(top level\): 'schema_version' is a required property"),
    (lambda d: d["experiments"]["a"]["benchmarks"]["bm"]["dpo"].update(modle="x"),
     r"experiments\.a\.benchmarks\.bm\.dpo"),
    (lambda d: d["experiments"]["a"]["benchmarks"]["bm"]["sft"]["metrics"].update(acc="high"),
     r"experiments\.a\.benchmarks\.bm\.sft\.metrics\.acc: 'high' is not of type 'number'"),
    (lambda d: d["ranking"][0].update(ci95=[0.1]), r"ranking\.0\.ci95"),
    (lambda d: d["provenance"].pop("git_commit"), r"provenance: 'git_commit' is a required property"),
])
def test_a_drifting_field_is_named_by_its_path(summary, change, where):
    broken = copy.deepcopy(summary)
    change(broken)
    with pytest.raises(ValueError, match=where):
        check_schema(broken, SCHEMA)
