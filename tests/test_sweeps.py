"""Sweeps expand a grid into named experiments; results/eval.json ranks experiments, sweep points
and data pools with intervals and significance against the best."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run_snakemake
from juicebox import layout
from juicebox.config import ConfigError, resolve
from juicebox.io import write_json, write_jsonl
from juicebox.sharing import stage_keys
from juicebox.sweeps import data_settings, expand
from juicebox.summary import build

SCHEMA_PATH = ROOT / "config" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
EXPERIMENT_SCHEMA = {**SCHEMA["$defs"]["experiment"], "$defs": SCHEMA["$defs"]}
CI_CONFIG = ".test/config_ci/config.yaml"


def ci_config():
    return yaml.safe_load((ROOT / CI_CONFIG).read_text())


def resolved(cfg):
    """The config resolved as if every input file existed."""
    return resolve(cfg, str(SCHEMA_PATH), produced=lambda path: True)


# --- expansion -----------------------------------------------------------------------------

def test_grid_product_is_named_by_values_in_order_and_keeps_the_base_override():
    cfg = {"experiments": {"raw": {}, "tight": {"description": "k-sigma on", "ksigma": {"enabled": True, "k": 2},
                                                "train": {"epochs": 2}}},
           "sweeps": {"kgrid": {"base": "tight", "grid": {"ksigma.k": [1.5, 2, 3], "train.beta": [0.05, 0.1]}}}}
    experiments, points = expand(cfg, EXPERIMENT_SCHEMA)
    generated = [name for name in experiments if name.startswith("kgrid-")]
    assert generated == ["kgrid-k1.5-beta0.05", "kgrid-k1.5-beta0.1", "kgrid-k2-beta0.05", "kgrid-k2-beta0.1",
                         "kgrid-k3-beta0.05", "kgrid-k3-beta0.1"]
    assert list(experiments)[:2] == ["raw", "tight"]  # keep_base defaults to true
    point = experiments["kgrid-k3-beta0.05"]
    # the base's own keys stay (enabled, train.epochs); the point's keys are set inside them
    assert point["ksigma"] == {"enabled": True, "k": 3} and point["train"] == {"epochs": 2, "beta": 0.05}
    assert point["description"] == "sweep kgrid: ksigma.k=3, train.beta=0.05; from tight: k-sigma on"
    assert cfg["experiments"]["tight"]["ksigma"]["k"] == 2  # the base itself is untouched
    assert points["kgrid"]["base"] == "tight" and points["kgrid"]["keys"] == ["ksigma.k", "train.beta"]
    assert points["kgrid"]["points"]["kgrid-k1.5-beta0.1"] == {"ksigma.k": 1.5, "train.beta": 0.1}


def test_non_scalar_values_are_named_by_index_and_unsafe_characters_replaced():
    one, two = [{"path": "a.jsonl"}], [{"path": "a.jsonl"}, {"path": "b.csv"}]
    cfg = {"experiments": {"raw": {}},
           "sweeps": {"mix": {"grid": {"sources": [one, two],
                                       "pool.steps": [[], [{"op": "downsample", "fraction": 0.5}]],
                                       "recipe": ["recipes/a b.yaml"]}}}}
    experiments, points = expand(cfg, EXPERIMENT_SCHEMA)
    assert list(experiments) == ["raw", "mix-sources0-steps0-reciperecipes_a_b.yaml",
                                 "mix-sources0-steps1-reciperecipes_a_b.yaml",
                                 "mix-sources1-steps0-reciperecipes_a_b.yaml",
                                 "mix-sources1-steps1-reciperecipes_a_b.yaml"]
    last = experiments["mix-sources1-steps1-reciperecipes_a_b.yaml"]
    assert last["sources"] == two and last["pool"] == {"steps": [{"op": "downsample", "fraction": 0.5}]}
    assert last["recipe"] == "recipes/a b.yaml"
    assert points["mix"]["base"] is None and points["mix"]["points"]["mix-sources0-steps0-reciperecipes_a_b.yaml"] \
        == {"sources": one, "pool.steps": [], "recipe": "recipes/a b.yaml"}


def test_keep_base_false_drops_the_base_unless_another_sweep_keeps_it():
    exps = {"raw": {}, "tight": {"ksigma": {"enabled": True}}}
    drop = {"base": "tight", "keep_base": False, "grid": {"ksigma.k": [1, 2]}}
    experiments, _ = expand({"experiments": exps, "sweeps": {"s": drop}}, EXPERIMENT_SCHEMA)
    assert list(experiments) == ["raw", "s-k1", "s-k2"]
    keep = {"base": "tight", "grid": {"train.beta": [0.2]}}
    experiments, _ = expand({"experiments": exps, "sweeps": {"s": drop, "t": keep}}, EXPERIMENT_SCHEMA)
    assert list(experiments) == ["raw", "tight", "s-k1", "s-k2", "t-beta0.2"]


@pytest.mark.parametrize("experiments, grid, message", [
    ({"s-k1": {}}, {"ksigma.k": [1]}, r"sweeps\.s: point 's-k1' has the name of a declared experiment"),
    ({"raw": {}}, {"recipe": ["a/b", "a_b"]}, r"sweeps\.s: two points are both named 's-recipea_b'"),
    ({"raw": {}}, {"ksigma.kk": [1]},
     r"sweeps\.s\.grid\.ksigma\.kk: unknown key 'kk' under ksigma \(did you mean 'k'\?\)"),
    ({"raw": {}}, {"trian.beta": [1]}, r"sweeps\.s\.grid\.trian\.beta: unknown key 'trian' under the experiment "
                                       r"\(did you mean 'train'\?\)"),
    ({"raw": {}}, {"pool.steps.0.fraction": [0.5]},
     r"sweeps\.s\.grid\.pool\.steps\.0\.fraction: pool\.steps is a list"),
])
def test_bad_sweeps_are_refused_with_their_path(experiments, grid, message):
    with pytest.raises(ConfigError, match=message):
        expand({"experiments": experiments, "sweeps": {"s": {"grid": grid}}}, EXPERIMENT_SCHEMA)


def test_resolved_sweep_points_are_checked_like_written_experiments():
    cfg = ci_config()
    cfg["sweeps"] = {"kgrid": {"base": "ksigma", "grid": {"ksigma.k": [1.5, "3"], "train.beta": [0.05]}}}
    out = resolved(cfg)
    assert {"raw", "ksigma", "vlm", "kgrid-k1.5-beta0.05", "kgrid-k3.0-beta0.05"} == set(out["experiments"])
    point = out["experiments"]["kgrid-k3.0-beta0.05"]  # "3" is a number where the schema wants one
    assert point["ksigma"]["k"] == 3.0 and point["ksigma"]["enabled"] is True and point["train"]["beta"] == 0.05
    assert point["train"]["epochs"] == 1 and point["ksigma"]["mode"] == "sigma"  # defaults, then schema defaults
    assert out["sweep_points"]["kgrid"]["points"] == {
        "kgrid-k1.5-beta0.05": {"ksigma.k": 1.5, "train.beta": 0.05},
        "kgrid-k3.0-beta0.05": {"ksigma.k": 3.0, "train.beta": 0.05},
        "ksigma": {"ksigma.k": 2, "train.beta": 0.1}}  # the kept base, from its resolved settings
    cfg["sweeps"]["kgrid"]["grid"]["ksigma.k"] = ["two"]
    with pytest.raises(ConfigError, match=r"experiments\.kgrid-ktwo-beta0\.05\.ksigma\.k: expected number"):
        resolved(cfg)
    cfg["sweeps"]["kgrid"] = {"base": "ksigm", "grid": {"ksigma.k": [1]}}
    with pytest.raises(ConfigError, match=r"sweeps\.kgrid\.base: 'ksigm' is no experiment \(did you mean 'ksigma'"):
        resolved(cfg)
    cfg["sweeps"]["kgrid"] = {"base": "ksigma", "grid": {"ksigma.k": [1]}, "keepbase": False}
    with pytest.raises(ConfigError, match=r"sweeps\.kgrid: unknown key\(s\) \['keepbase'\]"):
        resolved(cfg)


@pytest.mark.workflow
def test_dry_run_schedules_the_sweep_points(workdir):
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(
        {"sweeps": {"kgrid": {"base": "ksigma", "keep_base": False, "grid": {"ksigma.k": [1.5, 3]}}}}))
    proc = run_snakemake(workdir, "-n", "results/eval.json", "--configfile", CI_CONFIG, "sweep.yaml")
    out = proc.stdout + proc.stderr
    for exp in ("kgrid-k1.5", "kgrid-k3", "raw", "vlm"):
        adapter = layout.path("train", "adapter", exp=exp, round=1)
        assert adapter in out and layout.folder("eval", exp=exp, bench="demo_") in out, exp
    assert not re.search(r"results/ksigma/", out)  # the base itself is not kept


# --- data pools ----------------------------------------------------------------------------

def test_data_key_groups_experiments_by_their_data_half():
    cfg = ci_config()
    cfg["experiments"]["raw_beta"] = {"train": {"beta": 0.5}, "rollouts": {"sampling": {"n": 2}}}
    cfg["experiments"]["raw_k2_off"] = {"ksigma": {"enabled": False, "k": 2}}  # k means nothing while off
    cfg["experiments"]["ksigma_np"] = {"ksigma": {"enabled": True, "k": 2}, "dj": {"np": 2}}
    keys = stage_keys(resolved(cfg)["experiments"], seed=7)["data"]
    assert keys["raw"] == keys["raw_beta"] == keys["raw_k2_off"]
    assert len({keys["raw"], keys["ksigma"], keys["ksigma_np"], keys["vlm"]}) == 4


def test_data_settings_with_model_feedback():
    settings = {"sources": [{"path": "a.jsonl"}], "recipe": "r.yaml", "model": "tiny", "train": {"beta": 0.1},
                "ksigma": {"enabled": False, "k": 2}, "feedback": {"enabled": True, "refine": True, "from": None}}
    data = data_settings(settings)
    # feedback refines with k-sigma's k, and probes with this experiment's own model
    assert data["ksigma"] == {"enabled": False, "k": 2} and data["model"] == "tiny" and "train" not in data
    other = copy.deepcopy(settings)
    other["feedback"]["from"] = "raw"
    assert "model" not in data_settings(other) and data_settings(other) != data_settings(settings)
    off = copy.deepcopy(settings)
    off["feedback"] = {"enabled": False, "refine": True, "from": "raw"}
    assert data_settings(off) == {"sources": [{"path": "a.jsonl"}], "recipe": "r.yaml",
                                  "ksigma": {"enabled": False}, "feedback": {"enabled": False}}


# --- ranking with intervals and significance -----------------------------------------------

N = 10


def write_eval(root, exp, variant, scores, ci95, ids=None):
    """A hand-built metrics file and per-item file of benchmark `bm`, metric `acc`."""
    where = {"root": root, "exp": exp, "bench": "bm"}
    ids = ids or [f"q{i}" for i in range(len(scores))]
    write_jsonl(Path(layout.eval_path("predictions", variant, **where)),
                [{"id": i, "score": {"acc": s}, "stats": {"items": 1, "acc": s}} for i, s in zip(ids, scores)])
    write_json(Path(layout.eval_path("metrics", variant, **where)),
               {"n": len(scores), "metrics": {"acc": sum(scores) / len(scores)}, "ci95": {"acc": ci95},
                "lower_is_better": [], "benchmark": {"type": "multiple_choice"}})


@pytest.fixture
def hand_eval(tmp_path):
    """a: every item right; b: one wrong; c: every item wrong; d: other items (shares none)."""
    root = tmp_path / "results"
    write_eval(root, "a", "dpo", [1.0] * N, [1.0, 1.0])
    write_eval(root, "a", "sft", [1.0] * 5 + [0.0] * 5, [0.2, 0.8])
    write_eval(root, "a", "dpo_blank", [0.0] * N, [0.0, 0.0])
    write_eval(root, "b", "dpo", [1.0] * (N - 1) + [0.0], [0.7, 1.0])
    write_eval(root, "c", "dpo", [0.0] * N, [0.0, 0.0])
    write_eval(root, "d", "dpo", [0.0, 1.0], [0.0, 1.0], ids=["x0", "x1"])
    results = {"a": {"bm": ["sft", "dpo", "dpo_blank"]}, "b": {"bm": ["dpo"]}, "c": {"bm": ["dpo"]},
               "d": {"bm": ["dpo"]}}
    sweeps = {"beta": {"base": "b", "keys": ["train.beta"],
                       "points": {"b": {"train.beta": 0.1}, "c": {"train.beta": 0.5}, "d": {"train.beta": 1.0}}}}
    pools = {"a": "p1", "b": "p1", "c": "p2", "d": "p3"}
    return build(results, {"benchmark": "bm", "metric": "acc"}, {}, seed=3, repo=ROOT, root=root,
                 sweeps=sweeps, pools=pools)


def test_ranking_rows_have_intervals_and_significance_against_the_best(hand_eval):
    rows = {(r["experiment"], r["variant"]): r for r in hand_eval["ranking"]}
    assert [(r["experiment"], r["variant"]) for r in hand_eval["ranking"]] == [
        ("a", "dpo"), ("b", "dpo"), ("a", "sft"), ("d", "dpo"), ("c", "dpo")]  # blank ablation not ranked
    assert rows["a", "dpo"]["ci95"] == [1.0, 1.0] and rows["b", "dpo"]["ci95"] == [0.7, 1.0]
    best = rows["a", "dpo"]
    assert best["delta_vs_best"] == 0 and best["delta_vs_best_ci95"] == [0, 0] and best["significant"] is False
    # b - a = -1 on one item in ten, 0 elsewhere: a resample misses that item with probability
    # 0.9^10 = 0.35 > 2.5 %, so the interval's upper end is 0 and b is not significantly worse.
    b = rows["b", "dpo"]
    assert b["delta_vs_best"] == pytest.approx(-0.1)
    assert b["delta_vs_best_ci95"][1] == 0 and b["delta_vs_best_ci95"][0] < 0 and b["significant"] is False
    # c - a = -1 on every item: every resample's mean is -1.
    c = rows["c", "dpo"]
    assert c["delta_vs_best"] == -1 and c["delta_vs_best_ci95"] == [-1, -1] and c["significant"] is True
    # a's sft - a's dpo: -1 on half the items; the interval lies below 0
    sft = rows["a", "sft"]
    assert sft["delta_vs_best"] == -0.5 and sft["delta_vs_best_ci95"][1] < 0 and sft["significant"] is True
    # d shares no item with a: no paired interval, no verdict
    d = rows["d", "dpo"]
    assert d["delta_vs_best"] == -0.5 and d["delta_vs_best_ci95"] is None and d["significant"] is None


def test_sweep_points_are_ranked_against_the_sweeps_best(hand_eval):
    sweep = hand_eval["sweeps"]["beta"]
    assert sweep["base"] == "b" and sweep["keys"] == ["train.beta"]
    rows = sweep["ranking"]
    assert [(r["experiment"], r["point"], r["base"]) for r in rows] == [
        ("b", {"train.beta": 0.1}, True), ("d", {"train.beta": 1.0}, False), ("c", {"train.beta": 0.5}, False)]
    assert rows[0]["delta_vs_best"] == 0 and rows[0]["significant"] is False
    # c - b = -1 on nine items, 0 on one: every resample's mean is below 0 but for the 1e-10 chance
    c = rows[2]
    assert c["delta_vs_best"] == pytest.approx(-0.9) and c["delta_vs_best_ci95"][1] < 0 and c["significant"] is True
    assert rows[1]["significant"] is None


def test_pools_are_ranked_by_their_best_dpo_model(hand_eval):
    rows = hand_eval["pool_ranking"]
    assert [(r["pool"], r["experiments"], r["experiment"]) for r in rows] == [
        ("p1", ["a", "b"], "a"), ("p3", ["d"], "d"), ("p2", ["c"], "c")]
    assert all(r["variant"] == "dpo" for r in rows) and rows[0]["ci95"] == [1.0, 1.0]
    assert rows[0]["significant"] is False and rows[1]["significant"] is None
    assert rows[2]["delta_vs_best"] == -1 and rows[2]["delta_vs_best_ci95"] == [-1, -1] and rows[2]["significant"]
    # strict JSON: no NaN where an interval cannot be computed
    json.dumps([hand_eval[k] for k in ("ranking", "sweeps", "pool_ranking")], allow_nan=False)


def test_every_interval_of_the_hand_built_summary_brackets_its_figure(hand_eval):
    from juicebox.summary import intervals_excluding_their_figure

    assert intervals_excluding_their_figure(hand_eval) == []
    broken = json.loads(json.dumps(hand_eval))
    broken["ranking"][1]["delta_vs_best_ci95"] = [0.5, 0.6]
    assert [line.split(":")[0] for line in intervals_excluding_their_figure(broken)] == [
        f"ranking/{broken['ranking'][1]['experiment']}/{broken['ranking'][1]['variant']}/delta_vs_best"]
