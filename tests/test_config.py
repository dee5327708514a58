"""Config validation names the key; experiments inherit the defaults."""

import copy

import pytest
import yaml

from conftest import ROOT, run_snakemake
from juicebox.config import ConfigError, resolve

SCHEMA = str(ROOT / "config" / "config.schema.yaml")


def base():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def resolved(cfg):
    """The config resolved as if every input file existed (the paths checks have their own tests)."""
    return resolve(cfg, SCHEMA, produced=lambda path: True)


def test_embedded_default_resolves_with_schema_defaults():
    cfg = resolved(base())
    raw, ks, vlm = cfg["experiments"]["raw"], cfg["experiments"]["ksigma"], cfg["experiments"]["vlm"]
    assert raw["sources"] == ks["sources"] and {s["task"] for s in raw["sources"]} == {"math"}
    assert all(s.get("task") is None for s in vlm["sources"]) and vlm["model"] == "tiny_vlm"  # tasks per record
    assert list(raw["eval"]["benchmarks"]) == ["demo_math", "demo_math_greedy"]
    assert {b: v["type"] for b, v in vlm["eval"]["benchmarks"].items()} == {
        "demo_pope": "yes_no", "demo_mmstar": "multiple_choice", "demo_vqa": "vqa", "demo_caption": "caption",
        "demo_chair": "chair"}
    assert vlm["eval"]["blank_images"] == ["sft"] and not raw["eval"]["blank_images"]
    assert vlm["sft"]["freeze_vision_tower"] and not vlm["sft"]["freeze_multi_modal_projector"]
    assert raw["ksigma"] == {"enabled": False, "k": 3, "mode": "sigma", "allow_loosen": False, "per_op": {},
                             "stat_map": {}, "stat_ranges": {}}
    assert ks["ksigma"]["enabled"] is True and ks["ksigma"]["k"] == 2 and ks["ksigma"]["mode"] == "sigma"
    assert raw["pool"] == {"steps": []} and cfg["demo_data"]["n_math"] == 240
    assert cfg["demo_data"]["n_bench_math"] == 400 and cfg["demo_data"]["math_max"] == 8


def test_wrong_type_names_the_key():
    cfg = base()
    cfg["experiments"]["ksigma"]["ksigma"]["k"] = "two"
    with pytest.raises(ConfigError, match=r"experiments\.ksigma\.ksigma\.k: expected number, found 'two'"):
        resolved(cfg)


def test_unknown_key_names_the_key_and_the_allowed_ones():
    cfg = base()
    cfg["defaults"]["ksigma"]["kk"] = 3
    with pytest.raises(ConfigError, match=r"defaults\.ksigma: unknown key\(s\) \['kk'\] \(did you mean 'k'\?\); "
                                         r"allowed keys: \['allow_loosen'"):
        resolved(cfg)


def test_experiment_sets_its_own_sources():
    cfg = base()
    cfg["experiments"]["math_only"] = {"sources": copy.deepcopy(cfg["defaults"]["sources"][:1])}
    math_only = resolved(cfg)["experiments"]["math_only"]
    assert [s["name"] for s in math_only["sources"]] == ["math"]
    assert math_only["recipe"] == cfg["defaults"]["recipe"]


def test_bad_pool_step_and_bad_experiment_name():
    cfg = base()
    cfg["experiments"]["raw"] = {"pool": {"steps": [{"op": "downsample"}]}}
    with pytest.raises(ConfigError, match=r"experiments\.raw\.pool\.steps\[0\]: missing required key 'n'"):
        resolved(cfg)
    cfg = base()
    cfg["experiments"]["bad/name"] = {}
    with pytest.raises(ConfigError, match="experiment name"):
        resolved(cfg)


@pytest.mark.workflow
def test_snakemake_refuses_a_bad_config_before_any_job(workdir):
    cfg = base()
    cfg["seed"] = "forty-two"
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "seed: expected integer, found 'forty-two'" in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def test_mix_weights_need_a_size():
    cfg = base()
    cfg["experiments"]["raw"] = {"pool": {"mix": {"weights": {"math": 1}}}}
    with pytest.raises(ConfigError, match=r"experiments\.raw\.pool\.mix: 'size' is a dependency of 'weights'"):
        resolved(cfg)


def test_a_block_of_another_type_replaces_the_default_instead_of_merging(tmp_path):
    cfg = {"defaults": {"sources": [{"path": "a.jsonl", "task": "math"}], "recipe": "r.yaml",
                        "rollouts": {"engine": {"type": "hf", "batch_size": 64}},
                        "pairing": {"type": "all_pairs", "min_margin": 0.5}},
           "experiments": {"same": {"rollouts": {"engine": {"batch_size": 8}}},
                           "other": {"rollouts": {"engine": {"type": "openai", "endpoints": ["http://x"]}},
                                     "pairing": {"type": "rlaifv", "rank": 2}}}}
    experiments = resolved(cfg)["experiments"]
    assert experiments["same"]["rollouts"]["engine"] == {"type": "hf", "batch_size": 8, "device": None,
                                                         "dtype": "auto"}
    assert experiments["other"]["rollouts"]["engine"]["endpoints"] == ["http://x"]
    assert experiments["other"]["rollouts"]["engine"]["launch"] is None
    assert experiments["other"]["pairing"]["rank"] == 2 and "min_margin" not in experiments["other"]["pairing"]


def test_dj_executor_is_default_or_ray():
    cfg = base()
    assert resolved(cfg)["experiments"]["raw"]["dj"] == {"executor": "default", "np": 2}
    cfg["experiments"]["ksigma"]["dj"] = {"executor": "ray", "ray_address": "local"}
    assert resolved(cfg)["experiments"]["ksigma"]["dj"] == {"executor": "ray", "np": 2, "ray_address": "local"}
    cfg["experiments"]["ksigma"]["dj"] = {"executor": "dask"}
    with pytest.raises(ConfigError, match=r"experiments\.ksigma\.dj\.executor: unknown Data-Juicer executor "
                                         r"executor 'dask'; known: default, ray"):
        resolved(cfg)


def test_numeric_strings_are_numbers_and_inputs_must_exist(workdir, monkeypatch):
    cfg = base()
    cfg["experiments"]["raw"] = {"train": {"learning_rate": "5e-4", "epochs": "2"}, "rollouts": {"shards": "3"}}
    raw = resolved(cfg)["experiments"]["raw"]
    assert raw["train"]["learning_rate"] == 0.0005 and raw["train"]["epochs"] == 2.0 and raw["rollouts"]["shards"] == 3
    # `--config cpu_reproducible=false` gives the string "false": a boolean where the schema wants one
    assert resolved({**cfg, "cpu_reproducible": "false"})["cpu_reproducible"] is False
    with pytest.raises(ConfigError, match=r"cpu_reproducible: expected boolean, found 'no' \(str\)"):
        resolved({**cfg, "cpu_reproducible": "no"})
    # Input paths are relative to the working directory: a fresh one (config/ and .test/ only), never
    # the repository root, whose results/ holds the demo's data once `make demo` has run.
    monkeypatch.chdir(workdir)
    with pytest.raises(ConfigError, match=r"experiments\.raw\.sources\[0\]\.path: results/demo_data/math\.jsonl "
                                         r"does not exist \(and no rule of the workflow makes it\)"):
        resolve(base(), SCHEMA)
    (workdir / "results/demo_data").mkdir(parents=True)
    (workdir / "results/demo_data/math.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"experiments\.raw\.sources\[1\]\.path: results/demo_data/math_extra\.csv "
                                         r"does not exist"):
        resolve(base(), SCHEMA)


def test_replicates_are_experiments_seeded_apart_that_share_the_data_half():
    from juicebox.sharing import owners

    cfg = base()
    cfg["experiments"] = {"raw": {"replicates": 3}, "ksigma": cfg["experiments"]["ksigma"]}
    out = resolved(cfg)
    assert sorted(out["experiments"]) == ["ksigma", "raw", "raw-rep2", "raw-rep3"]
    assert [out["experiments"][e]["replicate"] for e in ("raw", "raw-rep2", "raw-rep3")] == [1, 2, 3]
    assert out["replicate_groups"] == {"raw": ["raw", "raw-rep2", "raw-rep3"], "ksigma": ["ksigma"]}
    owner = owners(out["experiments"], out["seed"])
    assert owner["data"]["raw-rep3"] == "raw"  # processed once
    assert owner["sft"]["raw-rep2"] == "raw-rep2"
    assert owner["eval_base"]["raw-rep2"] == owner["eval_base"]["raw"]  # the base model is not trained
    cfg["experiments"]["raw-rep2"] = {}
    with pytest.raises(ConfigError, match=r"experiments\.raw-rep2: the name is taken by replicate 2"):
        resolved(cfg)
