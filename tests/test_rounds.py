"""DPO rounds and shared work, without running the workflow: the ledger's round sections, the
curve over rounds in results/eval.json, the merged next-round policy and its provenance, and
which experiments share which stages (the two-round run itself: tests/test_workflow.py)."""

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SNAKEMAKE
from juicebox import layout
from juicebox.io import write_json, write_jsonl
from juicebox.ledger import LedgerError, assemble, stage
from juicebox.sharing import link_tree, owners, stage_keys, stages_of
from juicebox.summary import round_curves

PROCESSED = [("pool", stage(10, 10)), ("process", stage(10, 8, {"x": 2}))]


def round_stages(n_in=8, kept=6):
    return [("rollouts", stage(n_in, kept, {"no_answer": n_in - kept})), ("rewards", stage(kept, kept)),
            ("pairs", stage(kept, 4, {"no_margin": kept - 4}))]


def test_ledger_has_a_section_per_later_round_checked_like_the_first():
    dpo = {"in": 4, "kept": 4, "dropped": {}, "rejected": 0, "truncated": None}
    ledger = assemble(PROCESSED, {"dpo": dpo}, {2: (round_stages(), {"dpo": dpo}), 3: (round_stages(), {"dpo": dpo})})
    assert list(ledger["rounds"]) == ["2", "3"]
    assert list(ledger["rounds"]["2"]["stages"]) == ["rollouts", "rewards", "pairs"]
    assert ledger["rounds"]["3"]["training"]["dpo"]["in"] == 4
    # a round's rollouts start from the processed records again
    with pytest.raises(LedgerError, match="round 2: stage 'rollouts': in 7 != kept 8 of the process stage"):
        assemble(PROCESSED, {}, {2: (round_stages(n_in=7, kept=6), {})})
    with pytest.raises(LedgerError, match="round 2: stage 'rewards'"):
        assemble(PROCESSED, {}, {2: ([("rollouts", stage(8, 6, {"no_answer": 2})), ("rewards", stage(5, 5))], {})})
    with pytest.raises(LedgerError, match="round 2: training 'dpo'"):
        assemble(PROCESSED, {}, {2: (round_stages(), {"dpo": {**dpo, "kept": 3}})})


def write_variant(root, exp, variant, scores, ci, round_=1):
    rows = [{"id": f"q{i}", "score": {"accuracy": s}, "stats": {"items": 1, "accuracy": s}}
            for i, s in enumerate(scores)]
    where = {"root": root, "exp": exp, "bench": "bench", "round": round_}
    write_jsonl(Path(layout.eval_path("predictions", variant, **where)), rows)
    write_json(Path(layout.eval_path("metrics", variant, **where)),
               {"n": len(scores), "metrics": {"accuracy": sum(scores) / len(scores)}, "ci95": {"accuracy": ci},
                "variant": variant, "benchmark": {"type": "vqa"}})


def test_round_curve_goes_from_the_policy_through_every_round(tmp_path):
    write_variant(tmp_path, "exp", "base", [0, 0, 0, 0], [0, 0])
    write_variant(tmp_path, "exp", "sft", [0, 0, 1, 0], [0, 0.75])
    write_variant(tmp_path, "exp", "dpo", [0, 1, 1, 0], [0, 1])
    write_variant(tmp_path, "exp", "dpo", [1, 1, 1, 1], [1, 1], round_=2)
    curve = round_curves(tmp_path, "exp", {"bench": ["base", "sft", "dpo"]}, [2], seed=0)["bench"]["accuracy"]
    assert [(p["round"], p["variant"], p["value"]) for p in curve] == [(0, "sft", 0.25), (1, "dpo", 0.5),
                                                                        (2, "dpo", 1.0)]
    assert curve[0]["ci95"] == [0, 0.75] and "delta_vs_previous" not in curve[0]
    assert curve[1]["delta_vs_previous"] == 0.25 and curve[2]["delta_vs_previous"] == 0.5
    # paired over the same items: round 2 - round 1 is 1 on q0 and q3, 0 elsewhere
    low, high = curve[2]["delta_vs_previous_ci95"]
    assert 0 <= low <= 0.5 <= high <= 1
    # without sft the curve starts at the base model
    write_variant(tmp_path, "nosft", "base", [0, 0, 0, 0], [0, 0])
    write_variant(tmp_path, "nosft", "dpo", [1, 0, 0, 0], [0, 0.5])
    write_variant(tmp_path, "nosft", "dpo", [1, 1, 0, 0], [0, 1], round_=2)
    curve = round_curves(tmp_path, "nosft", {"bench": ["base", "dpo"]}, [2], seed=0)["bench"]["accuracy"]
    assert [p["variant"] for p in curve] == ["base", "dpo", "dpo"]


@pytest.mark.train
def test_merged_policy_is_the_previous_policy_plus_its_adapter_and_says_so(tmp_path):
    from peft import LoraConfig, get_peft_model

    import torch

    from juicebox.models import POLICY_PROVENANCE, build_tiny_model, load_model, merge_policy
    from juicebox.models import TinySpecOptions

    base = tmp_path / "base"
    build_tiny_model(base, ["one two three four five six seven"] * 20, seed=0,
                     spec=TinySpecOptions(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1, vocab_size=64))
    model = load_model(base).model
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    provenance = merge_policy(base, tmp_path / "adapter", tmp_path / "round2/policy", 2)
    sha = hashlib.sha256((tmp_path / "adapter/adapter_model.safetensors").read_bytes()).hexdigest()
    assert provenance == {"round": 2, "base": str(base), "adapter": str(tmp_path / "adapter"), "adapter_sha256": sha}
    assert json.loads((tmp_path / "round2/policy" / POLICY_PROVENANCE).read_text()) == provenance
    ids = torch.tensor([[1, 2, 3, 4]])
    merged = load_model(tmp_path / "round2/policy").model
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, load_model(base).model(ids).logits, atol=1e-3)


EXPERIMENT = {"sources": [{"path": "a.jsonl"}], "max_rejected_fraction": 0.05, "pool": {}, "recipe": "r.yaml",
              "ksigma": {"enabled": False}, "dj": {"np": 1}, "feedback": {"enabled": False}, "model": "tiny",
              "sft": {"enabled": True, "epochs": 1}, "rollouts": {"n": 4}, "rewards": {"functions": []},
              "pairing": {"type": "all_pairs"}, "train": {"beta": 0.1}, "rounds": 1, "eval": {"benchmarks": {}}}


def variant(**changes):
    exp = json.loads(json.dumps(EXPERIMENT))
    for dotted, value in changes.items():
        block, key = dotted.split("__")
        exp[block][key] = value
    return exp


def test_experiments_share_each_stage_up_to_their_first_difference():
    experiments = {"a": variant(), "beta": variant(train__beta=0.2), "k": variant(ksigma__enabled=True),
                   "epochs": variant(sft__epochs=2), "same": variant()}
    own = owners(experiments, seed=1)
    assert own["data"] == {"a": "a", "beta": "a", "k": "k", "epochs": "a", "same": "a"}
    assert own["sft"] == {"a": "a", "beta": "a", "k": "k", "epochs": "epochs", "same": "a"}
    assert own["pairs"]["beta"] == "a" and own["train"]["beta"] == "beta"
    # the base model's evaluation reads the model and eval settings only
    assert set(own["eval_base"].values()) == {"a"}
    assert own["eval_sft"]["beta"] == "a" and own["eval_dpo"]["beta"] == "beta"
    assert own["train"]["same"] == "a" and own["eval_dpo"]["same"] == "a"
    assert stage_keys(experiments, seed=1)["data"]["a"] != stage_keys(experiments, seed=2)["data"]["a"]


def test_the_recipe_file_content_is_part_of_the_data_key(tmp_path):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("process: []\n")
    two.write_text("process: []\n")
    experiments = {"a": {**variant(), "recipe": str(one)}, "b": {**variant(), "recipe": str(two)}}
    assert owners(experiments, 0)["data"]["b"] == "a"
    two.write_text("process: [{text_length_filter: {min_len: 5}}]\n")
    assert owners(experiments, 0)["data"]["b"] == "b"


def test_output_patterns_map_to_their_stages():
    def under_exp(stage, name):
        return layout.path(stage, name, root="").removeprefix("{exp}/")

    assert stages_of(under_exp("processed", "data")) == {"data"}
    # round 1's stages are their own; every later round's are the "rounds" stage
    assert stages_of(under_exp("train", "adapter")) == {"train", "rounds"}
    assert stages_of(under_exp("rollouts", "shard")) == {"rollouts", "rounds"}
    assert stages_of(under_exp("policy", "policy")) == {"rounds"}
    assert stages_of(under_exp("eval", "metrics")) == {"eval_base", "eval_sft", "eval_grpo"}
    assert stages_of(under_exp("round_eval", "metrics")) == {"eval_dpo", "rounds"}
    assert stages_of(under_exp("ledger", "ledger")) == set()


def test_link_tree_links_files_and_folders(tmp_path):
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/sub/w.bin").write_bytes(b"weights")
    (tmp_path / "src/.snakemake_timestamp").write_text("")
    link_tree(tmp_path / "src", tmp_path / "dst/model")
    assert (tmp_path / "dst/model/sub/w.bin").stat().st_ino == (tmp_path / "src/sub/w.bin").stat().st_ino
    # Snakemake touches its marker in the borrower's folder: that must not touch the owner's
    assert not (tmp_path / "dst/model/.snakemake_timestamp").exists()


@pytest.mark.workflow
def test_dry_run_of_experiments_differing_in_beta_computes_the_common_stages_once(workdir):
    from test_workflow import job_counts

    tmp_path = workdir
    cfg = yaml.safe_load((tmp_path / ".test/config_ci/config.yaml").read_text())
    cfg.pop("sweeps", None)
    cfg["experiments"] = {"raw": {}, "raw_b2": {"train": {"beta": 0.2}}, "ks": {"ksigma": {"enabled": True}},
                          "raw_r2": {"rounds": 2}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-n", "--cores", "1", "--configfile",
                           "sweep.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["process_data"] == 2 and counts["sft"] == 2       # raw (shared by raw_b2, raw_r2) and ks
    assert counts["rollout_shard"] == 2 * 2 + 2  # raw, ks; raw_r2's round 2
    assert counts["train_dpo"] == 3 + 1   # raw (= raw_r2's round 1), raw_b2, ks; raw_r2's round 2
    assert counts["merge_policy"] == 1
    # base evaluated once for all; sft once per sft model; dpo once per adapter
    from juicebox.options import EvalOptions

    n_bench = len(cfg["defaults"]["eval"].get("benchmarks") or EvalOptions.parse({}, "eval").benchmarks)
    assert counts["evaluate"] == n_bench * (1 + 2) and counts["evaluate_policy"] == n_bench * (3 + 1)
    assert counts["share_sft_dir"] == 2
