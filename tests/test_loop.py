"""The loop beyond one pass, through Snakemake on the CI-sized data: two DPO rounds (the second
sampling from the first round's merged policy), a sweep point sharing everything up to DPO with
its base, and an experiment whose recipe is refined from another experiment's model feedback."""

import hashlib
import json

import pytest
import yaml

from conftest import make_workdir, run_snakemake
from juicebox import layout
from juicebox.ledger import check
from juicebox.models import POLICY_PROVENANCE

CONFIG = "loop.yaml"
SWEPT = "beta-beta0.3-rounds1"
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("loop"))
    cfg = yaml.safe_load((work / ".test/config_ci/config.yaml").read_text())
    limit = {"limit": 48}
    cfg["experiments"] = {
        "raw": {"rounds": 2, "rollouts": limit},
        # k = 2: the CI-sized SFT model's losses are narrow (sd 0.05), and past 3 sd the one record
        # there was had already gone to an earlier op
        "feedback": {"rollouts": limit, "ksigma": {"per_op": {"model_stat_filter": {"k": 2}}},
                     "feedback": {"enabled": True, "model": "sft", "from": "raw",
                                  "filters": [{"stat": "model_loss", "max_value": None}]}},
    }
    cfg["sweeps"] = {"beta": {"base": "raw", "grid": {"train.beta": [0.3], "rounds": [1]}}}
    (work / CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_snakemake(work, "--configfile", CONFIG, "--cores", "2")
    return work


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def at(stage, name, exp="raw", round=1, **wildcards):
    """An output's path relative to the work folder (as the jobs write it into provenance)."""
    return layout.path(stage, name, exp=exp, round=round, **wildcards)


def test_second_round_samples_from_the_first_rounds_policy(loop):
    policy = json.loads((loop / at("policy", "policy", round=2) / POLICY_PROVENANCE).read_text())
    weights = loop / at("train", "adapter") / "adapter_model.safetensors"
    assert policy == {"round": 2, "base": at("sft", "model"), "adapter": at("train", "adapter"),
                      "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    rollouts = lines(loop / at("rollouts", "rollouts", round=2))
    assert rollouts and {r["model"] for r in rollouts} == {at("policy", "policy", round=2)}
    # round 1 sampled from raw's SFT model (computed once, with the sweep point: its owner's path)
    first, = {r["model"] for r in lines(loop / at("rollouts", "rollouts"))}
    sft = loop / at("sft", "model") / "model.safetensors"
    assert (loop / first / "model.safetensors").stat().st_ino == sft.stat().st_ino
    # round 2 trained its own adapter on its own pairs, from the merged policy
    summary = json.loads((loop / at("train", "summary", round=2)).read_text())
    assert summary["pairs"] == len(lines(loop / at("pairs", "jsonl", round=2)))
    assert (loop / at("train", "adapter", round=2) / "adapter_model.safetensors").read_bytes() != weights.read_bytes()


def test_ledger_and_eval_json_cover_every_round(loop):
    ledger = json.loads((loop / "results/raw/ledger.json").read_text())
    check(ledger)
    assert list(ledger["rounds"]) == ["2"]
    section = ledger["rounds"]["2"]
    assert section["stages"]["rollouts"]["in"] == ledger["stages"]["process"]["kept"]
    assert section["training"]["dpo"]["in"] == len(lines(loop / at("pairs", "jsonl", round=2)))
    summary = json.loads((loop / "results/eval.json").read_text())
    curve = summary["experiments"]["raw"]["rounds"]["demo_math"]["pass@1"]
    assert [(p["round"], p["variant"]) for p in curve] == [(0, "sft"), (1, "dpo"), (2, "dpo")]
    round2 = json.loads((loop / layout.eval_path("metrics", "dpo", exp="raw", bench="demo_math", round=2)).read_text())
    assert curve[2]["value"] == round2["metrics"]["pass@1"] and round2["adapter"] == at("train", "adapter", round=2)
    assert "rounds" not in summary["experiments"][SWEPT]


def test_sweep_point_shares_everything_before_its_dpo(loop):
    def same_file(path, *inside):
        raw, swept = (loop.joinpath(path(exp), *inside) for exp in ("raw", SWEPT))
        return raw.stat().st_ino == swept.stat().st_ino

    def output(stage, name):
        return lambda exp: at(stage, name, exp=exp)

    def evaluated(variant):
        return lambda exp: layout.eval_path("metrics", variant, exp=exp, bench="demo_math")

    for path, inside in [(output("processed", "data"), ()), (output("sft", "model"), ("model.safetensors",)),
                         (output("rollouts", "rollouts"), ()), (output("rewards", "scored"), ()),
                         (output("pairs", "parquet"), ()), (evaluated("base"), ()), (evaluated("sft"), ())]:
        assert same_file(path, *inside), path(SWEPT)
    assert not same_file(output("train", "adapter"), "adapter_model.safetensors")
    assert not same_file(evaluated("dpo"))
    assert not (loop / layout.folder("policy", exp=SWEPT, round=2)).exists()
    check(json.loads((loop / at("ledger", "ledger", exp=SWEPT)).read_text()))
    summary = json.loads((loop / "results/eval.json").read_text())
    points = summary["sweeps"]["beta"]["ranking"]
    assert {row["experiment"] for row in points} == {"raw", SWEPT}
    pools = {row["pool"]: row["experiments"] for row in summary["pool_ranking"]}
    assert pools == {"raw": ["beta-beta0.3-rounds1", "raw"], "feedback": ["feedback"]}


def test_feedback_refinement_drops_records_by_the_other_experiments_model(loop):
    res = loop / layout.folder("ledger", exp="feedback")
    stats = lines(res / "probe/model_stats.jsonl")
    pool = lines(res / "pool/pool.jsonl")
    assert [row["id"] for row in stats] == [r["id"] for r in pool]
    losses = [row["stats"]["model_loss"] for row in stats if "model_loss" in row["stats"]]
    # (records whose prompt and answer exceed feedback.max_length, the overlong junk, get none)
    assert len(losses) > len(pool) * 0.9 and all(loss > 0 for loss in losses)
    rolled = {r["id"] for r in lines(loop / at("rewards", "scored"))}
    assert {row["id"] for row in stats if "pass_rate" in row["stats"]} == rolled
    change = next(c for c in json.loads((res / "recipe/changes.json").read_text()) if c["op"] == "model_stat_filter")
    assert change["stat"] == "model_loss" and change["after"] is not None
    ledger = json.loads((res / "ledger.json").read_text())
    dropped = ledger["stages"]["process"]["dropped"]["model_stat_filter:model_loss"]
    high = sum(loss > change["after"] for loss in losses)
    assert 0 < dropped <= high
    feedback = json.loads((res / "processed/summary.json").read_text())["feedback"]
    assert feedback["dropped"] == dropped and feedback["reached"] == ledger["stages"]["process"]["in"] - sum(
        n for op, n in ledger["stages"]["process"]["dropped"].items() if op != "model_stat_filter:model_loss")
    noisy = feedback["labels"]["any_noise"]
    # dropped_noise counts the dropped records by label, the clean ones too
    assert noisy["dropped"] == sum(n for label, n in feedback["dropped_noise"].items() if label != "clean")
    assert 0 <= noisy["precision"] <= 1


def test_nothing_is_rerun_after_the_loop(loop):
    # Shared outputs are hard links: nothing Snakemake does to a borrower's copy may make the
    # owner's look newer (or the other way round).
    proc = run_snakemake(loop, "--configfile", CONFIG, "--cores", "1", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
