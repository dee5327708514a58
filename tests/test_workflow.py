"""The demo through Snakemake on the CI-sized config, to results/eval.json: the contract files."""

import json
import math
import re
import statistics

import pytest
import yaml

from conftest import ROOT, make_workdir, run_snakemake
from juicebox import cpu, layout
from juicebox.ledger import check
from juicebox.summary import check_schema, intervals_excluding_their_figure

CONFIG = ".test/config_ci/config.yaml"
EXPERIMENTS = ("raw", "ksigma", "vlm")
TEXT_EXPERIMENTS = ("raw", "ksigma")  # the tiny text model on math; vlm: the tiny VLM on shape pictures
pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    run_snakemake(work, "--configfile", CONFIG, "--cores", "2")
    return work


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def at(work, stage, name, exp, round=1, **wildcards):
    """One output of an experiment in a work folder (a trained one: of DPO round ``round``)."""
    return work / layout.path(stage, name, exp=exp, round=round, **wildcards)


def job_counts(output):
    """Rule -> job count from the 'Job stats' table of a dry run."""
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_contract_files_and_ledger(demo, exp):
    res = demo / "results" / exp
    contract = [("pool", "pool"), ("pool", "rejected"), ("probe", "stats"), ("probe", "summary"),
                ("recipe", "refined"), ("recipe", "changes"), ("processed", "data"), ("ledger", "ledger")]
    for stage, name in contract:
        assert at(demo, stage, name, exp).is_file(), (stage, name)
    ledger = json.loads(at(demo, "ledger", "ledger", exp).read_text())
    check(ledger)
    pool, rejected, processed = (lines(at(demo, stage, name, exp))
                                 for stage, name in (("pool", "pool"), ("pool", "rejected"), ("processed", "data")))
    stages = ledger["stages"]
    assert list(stages) == ["pool", "process", "rollouts", "rewards", "pairs"]
    assert list(ledger["training"]) == ["sft", "dpo"] and ledger["training"]["dpo"]["in"] == \
        len(lines(at(demo, "pairs", "jsonl", exp)))
    assert stages["pool"]["kept"] == len(pool) and stages["pool"]["rejected"] == len(rejected) > 0
    assert stages["process"]["in"] == len(pool) and stages["process"]["kept"] == len(processed)
    assert {r["id"] for r in processed} <= {r["id"] for r in pool}
    # The broken records of the demo are quarantined with file, line/row, reason and raw text.
    reasons = " | ".join(r["reason"] for r in rejected)
    expected = ("image not found", "not an image") if exp == "vlm" else (
        "unparseable JSON", "missing required field 'prompt'", "wrong type for 'answer'", "empty prompt",
        "duplicate id", "malformed CSV row")
    for reason in expected:
        assert reason in reasons
    assert all({"source", "reason", "raw"} <= set(r) and ("line" in r or "row" in r) for r in rejected)
    histograms = list((res / "probe/histograms").glob("*.png"))
    assert len(histograms) == len(json.loads((res / "probe/summary.json").read_text()))


def test_refined_thresholds_are_mean_plus_minus_k_std_from_stats(demo):
    res = demo / "results" / "ksigma"
    stats = lines(res / "probe/stats.jsonl")
    recipe = yaml.safe_load((demo / "config/recipes/demo_text.yaml").read_text())
    refined = yaml.safe_load((res / "recipe/refined.yaml").read_text())
    changes = json.loads((res / "recipe/changes.json").read_text())
    assert changes, "the ksigma experiment refined nothing"
    ratio_stats = {"alnum_ratio", "special_char_ratio", "char_rep_ratio", "word_rep_ratio"}
    for c in changes:
        values = [s["stats"][c["stat"]] for s in stats]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        side = "lower" if c["arg"].startswith("min") else "upper"
        expected = mean - 2 * std if side == "lower" else mean + 2 * std
        assert c["k"] == 2 and c["computed"] == pytest.approx(expected)
        lo, hi = (0.0, 1.0) if c["stat"] in ratio_stats else (0.0, None)
        clamped = max(expected, lo) if hi is None else min(max(expected, lo), hi)
        if isinstance(c["after"], int) and c["stat"] not in ratio_stats:
            clamped = math.ceil(clamped) if side == "lower" else math.floor(clamped)
        user = (recipe["process"][c["op_index"]][c["op"]] or {}).get(c["arg"])
        if user is not None:  # a written bound is never loosened
            clamped = max(clamped, user) if side == "lower" else min(clamped, user)
        assert c["after"] == pytest.approx(clamped), c
        assert refined["process"][c["op_index"]][c["op"]][c["arg"]] == c["after"]
        dropped = sum((v < c["after"]) if side == "lower" else (v > c["after"]) for v in values)
        assert c["drop_fraction"] == pytest.approx(dropped / len(values))
    raw_refined = yaml.safe_load((demo / "results/raw/recipe/refined.yaml").read_text())
    assert raw_refined == recipe and json.loads((demo / "results/raw/recipe/changes.json").read_text()) == []


def test_second_dry_run_has_nothing_to_do(demo):
    proc = run_snakemake(demo, "--configfile", CONFIG, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def report_variable(html, name):
    """A JSON value the self-contained report embeds as `<script id="name">var name = ...;</script>`."""
    match = re.search(rf'<script id="{name}">\s*var {name.replace("-", "_")} = (.*);\s*</script>', html)
    return json.loads(match.group(1))


def test_report_shows_every_figure_with_its_caption(demo):
    run_snakemake(demo, "--configfile", CONFIG, "--report", "report.html")
    html = (demo / "report.html").read_text(encoding="utf-8")
    assert len(html) > 500_000  # figures are embedded as data URIs
    results, categories = report_variable(html, "results"), report_variable(html, "categories")
    description = report_variable(html, "workflow-desc")
    assert "Juicebox: the data-model co-development loop" in description
    assert "system-message" not in description  # docutils' warnings (tests/test_report.py)
    # (no experiment of the CI config has model feedback: no "<exp> (model stats)" subcategory)
    per_exp = {"1. Probe stats and thresholds": "Probe stat", "2. Data-Juicer ops": "Records kept and dropped",
               "3. Rewards": "Reward distributions", "4. Pair margins": "DPO pair margins",
               "5. Training": "Training curves"}
    assert set(categories) == {*per_exp, "6. Benchmarks"}
    assert set(categories["6. Benchmarks"]) == {"demo_math", "demo_math_greedy", "demo_pope", "demo_caption"}
    for category, caption in per_exp.items():
        assert set(categories[category]) == set(EXPERIMENTS)
        for exp in EXPERIMENTS:
            for path in categories[category][exp]:
                assert results[path]["data_uri"].startswith("data:image/png")
                assert caption in results[path]["caption"] and "system-message" not in results[path]["caption"]
                assert f'experiment <tt class="docutils literal">{exp}</tt>' in results[path]["caption"]
    histograms = categories["1. Probe stats and thresholds"]
    for exp in EXPERIMENTS:
        assert len(histograms[exp]) == len(list((demo / "results" / exp / "probe/histograms").glob("*.png")))
    assert "k = 2" in results[histograms["ksigma"][0]]["caption"]
    assert "k-sigma is disabled" in results[histograms["raw"][0]]["caption"]
    math_figure = results[categories["6. Benchmarks"]["demo_math"][0]]
    assert "95 % percentile-bootstrap" in math_figure["caption"]
    assert math_figure["data_uri"].startswith("data:image/png")


def test_changed_k_reruns_only_refinement_and_what_follows(demo):
    cfg = yaml.safe_load((demo / CONFIG).read_text())
    cfg["experiments"]["ksigma"]["ksigma"]["k"] = 2.5
    (demo / "changed_k.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(demo, "--configfile", "changed_k.yaml", "-n")
    out = proc.stdout + proc.stderr
    counts = job_counts(out)
    assert {k: counts[k] for k in ("refine_recipe_ksigma", "plot_thresholds", "process_data", "sft", "train_dpo")} \
        == {"refine_recipe_ksigma": 1, "plot_thresholds": 1, "process_data": 1, "sft": 1, "train_dpo": 1}, out[-3000:]
    # ksigma's two shards; its GSPO; sft, grpo and dpo on its two benchmarks (base does not depend on the data)
    assert counts["rollout_shard"] == 2 and counts["train_grpo"] == 1
    assert counts["evaluate"] == 2 * 2 and counts["evaluate_policy"] == 2
    assert not {"make_demo_data", "build_pool", "probe", "build_tiny_model"} & set(counts)
    # (track_eval logs results/eval.json, which changes, to every experiment's tracker)
    written = "".join(line for line in re.findall(r"output: .*", out) if not line.endswith("/tb/eval/done.json"))
    assert "results/raw/" not in written and "results/vlm/" not in written


def test_eval_json_schema_and_provenance(demo):
    summary = json.loads((demo / "results/eval.json").read_text())
    check_schema(summary, ROOT / "docs/eval.schema.json")
    assert set(summary) >= {"experiments", "ranking", "provenance"}
    for exp in EXPERIMENTS:
        entry = summary["experiments"][exp]
        assert set(entry["benchmarks"]) == ({"demo_pope", "demo_caption"} if exp == "vlm"
                                            else {"demo_math", "demo_math_greedy"})
        for bench, variants in entry["benchmarks"].items():
            blank = {"sft_blank"} if exp == "vlm" else set()
            online = {"grpo"} if exp in ("ksigma", "vlm") else set()  # the CI config's GSPO
            assert set(variants) == {"base", "sft", "dpo"} | blank | online
            for result in variants.values():
                assert isinstance(result["n"], int) and result["n"] > 0
                for metric, value in result["metrics"].items():
                    lo, hi = result["ci95"][metric]
                    assert lo <= hi and isinstance(value, float)
        if exp == "vlm":
            cider = entry["deltas"]["demo_caption"]["CIDEr"]
            captions = entry["benchmarks"]["demo_caption"]
            assert cider["sft_vs_sft_blank"] == pytest.approx(captions["sft"]["metrics"]["CIDEr"]
                                                              - captions["sft_blank"]["metrics"]["CIDEr"])
            # the POPE-format benchmark end to end: its four figures and the predicted-yes share
            pope = entry["benchmarks"]["demo_pope"]["dpo"]
            assert {"accuracy", "precision", "recall", "f1", "yes_ratio_pred"} <= set(pope["metrics"])
            assert entry["deltas"]["demo_pope"]["accuracy"]["dpo_vs_sft"] == pytest.approx(
                pope["metrics"]["accuracy"] - entry["benchmarks"]["demo_pope"]["sft"]["metrics"]["accuracy"])
            continue
        delta = entry["deltas"]["demo_math"]["pass@1"]
        math_metrics = entry["benchmarks"]["demo_math"]
        assert delta["dpo_vs_sft"] == pytest.approx(math_metrics["dpo"]["metrics"]["pass@1"]
                                                    - math_metrics["sft"]["metrics"]["pass@1"])
    values = [r["value"] for r in summary["ranking"]]
    assert len(values) == 7 and values == sorted(values, reverse=True)  # raw: base, sft, dpo; ksigma: and grpo
    assert {r["metric"] for r in summary["ranking"]} == {"pass@1"}
    prov = summary["provenance"]
    assert len(prov["config_sha256"]) == 64 and prov["seed"] == 7 and prov["packages"]["trl"]
    assert prov["cpu"]["settings"] == cpu.SETTINGS  # every job ran with the pinned CPU code paths


def test_every_interval_brackets_its_figure(demo):
    summary = json.loads((demo / "results/eval.json").read_text())
    assert intervals_excluding_their_figure(summary) == []
    # the caption metrics whose corpus figure pools statistics are among the intervals checked
    captions = summary["experiments"]["vlm"]["benchmarks"]["demo_caption"]["sft"]
    assert {"BLEU-4", "METEOR", "CIDEr"} <= set(captions["ci95"])
    assert summary["experiments"]["vlm"]["deltas_ci95"]["demo_caption"]["METEOR"]["dpo_vs_sft"] is not None


@pytest.mark.parametrize("exp", TEXT_EXPERIMENTS)
def test_rescoring_predictions_with_math_verify_reproduces_accuracy(demo, exp):
    from juicebox.scoring import gold_answer_math, math_correct

    for variant in ("base", "sft", "dpo"):
        where = {"exp": exp, "bench": "demo_math"}
        rows = lines(demo / layout.eval_path("predictions", variant, **where))
        reported = json.loads((demo / layout.eval_path("metrics", variant, **where)).read_text())
        gold = [gold_answer_math(r["gold"]) for r in rows]
        pass1 = statistics.fmean(statistics.fmean(math_correct(p, g) for p in r["predictions"])
                                 for r, g in zip(rows, gold))
        assert pass1 == pytest.approx(reported["metrics"]["pass@1"])
        assert all(len(r["predictions"]) == 2 for r in rows)


@pytest.mark.parametrize("exp", EXPERIMENTS)
def test_model_half_files(demo, exp):
    import pyarrow.parquet as pq

    res = demo / "results" / exp
    rollouts = lines(at(demo, "rollouts", "rollouts", exp))
    ledger = json.loads((res / "ledger.json").read_text())["stages"]
    assert ledger["rollouts"]["kept"] == len(rollouts) == ledger["rewards"]["in"]
    for record in rollouts:
        assert len(record["samples"]) == 4 and record["sampling"]["n"] == 4
        assert record["engine"]["type"] == "hf" and record["model"].endswith(layout.path("sft", "model", exp=exp))
    assert len({r["id"] for r in rollouts}) == len(rollouts)
    pairs = pq.read_table(at(demo, "pairs", "parquet", exp)).to_pylist()
    assert pairs and all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
    assert pairs[0]["prompt"][0]["role"] == "user" and pairs[0]["chosen"][0]["role"] == "assistant"
    info = json.loads(at(demo, "pairs", "dataset_info", exp).read_text())
    assert next(iter(info.values()))["ranking"] is True
    assert ledger["pairs"]["kept"] == len({p["prompt_id"] for p in pairs})
    adapter = at(demo, "train", "adapter", exp)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert at(demo, "train", "plot", exp).stat().st_size > 0


def test_adapter_loads_with_peft(demo):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(at(demo, "sft", "model", "ksigma"))
    model = PeftModel.from_pretrained(base, at(demo, "train", "adapter", "ksigma"))
    assert model.peft_config["default"].r == 16
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_every_model_stage_of_the_vlm_sees_the_images(demo):
    import pyarrow.parquet as pq
    from safetensors import safe_open

    from juicebox.models import load_model
    from juicebox.images import load_image

    res = demo / "results/vlm"
    pool = lines(res / "pool/pool.jsonl")
    assert pool and all(r["images"] for r in pool)
    # inline images (data URIs, base64, {bytes, path}) were stored once in the pool's image store
    stored = [i for r in pool for i in r["images"] if i.startswith("results/vlm/pool/images/")]
    assert stored and all((demo / i).is_file() for r in pool for i in r["images"])
    dropped = json.loads((res / "processed/ledger_stage.json").read_text())["dropped"]
    assert sum(dropped[op] for op in ("image_aspect_ratio_filter", "image_shape_filter", "image_size_filter")) > 0
    rollouts = lines(at(demo, "rollouts", "rollouts", "vlm"))
    sft = layout.path("sft", "model", exp="vlm")
    assert rollouts and all(r["images"] and r["model"].endswith(sft) for r in rollouts)
    pairs = pq.read_table(at(demo, "pairs", "parquet", "vlm")).to_pylist()
    assert pairs and all(p["images"] for p in pairs)
    assert all({"type": "image", "text": None} in p["prompt"][0]["content"] for p in pairs)
    adapter = at(demo, "train", "adapter", "vlm")
    with safe_open(adapter / "adapter_model.safetensors", "pt") as tensors:
        names = list(tensors.keys())
    assert names and all(".language_model.layers." in n for n in names)
    loaded = load_model(at(demo, "sft", "model", "vlm"), adapter=adapter)
    assert loaded.vision and load_image(str(demo / pool[0]["images"][0])).size[0] > 0
    # the blank-image ablation: the same items, the same model, shown blank images (whether this
    # briefly trained model answers differently is up to it; tests/test_vlm_engines.py shows that
    # other images give other answers)
    for bench in ("demo_caption", "demo_pope"):
        seen, blank = (json.loads((res / f"eval/{bench}/{v}.json").read_text()) for v in ("sft", "sft_blank"))
        assert (seen["blank_images"], blank["blank_images"]) == (False, True)
        assert (seen["model"], seen["adapter"], seen["n"]) == (blank["model"], blank["adapter"], blank["n"])
        # short answers and captions decode greedily unless the benchmark says otherwise
        assert (seen["sampling"]["n"], seen["sampling"]["temperature"]) == (1, 0.0)
        log = (res / f"logs/eval/{bench}-sft_blank.log").read_text()
        assert re.search(r"(\d+) items \(\1 with images, shown blank\)", log)
    # POPE's prompts: the question in the benchmark's prompt template
    rows = lines(res / "eval/demo_pope/sft.jsonl")
    assert all(r["prompt"].endswith("\nAnswer the question using a single word or phrase.") for r in rows)


def test_a_hub_model_is_downloaded_by_its_own_rule(workdir):
    cfg = yaml.safe_load((workdir / CONFIG).read_text())
    cfg["experiments"]["raw"]["model"] = "Qwen/Qwen2.5-0.5B-Instruct"
    (workdir / "hub.yaml").write_text(yaml.safe_dump(cfg))
    out = run_snakemake(workdir, "--configfile", "hub.yaml", "-n").stdout
    counts = job_counts(out)
    assert counts["download_model"] == 1 and counts["build_tiny_model"] == 1  # ksigma still uses tiny
    assert "resources/models/Qwen--Qwen2.5-0.5B-Instruct" in out


@pytest.mark.parametrize("exp", ["ksigma", "vlm"])
def test_online_rl_trains_and_is_evaluated_as_the_grpo_variant(demo, exp):
    """The CI config turns GSPO on for ksigma (text) and vlm: its model, curves and summary, and the
    grpo variant in eval.json with its paired deltas."""
    import csv

    from juicebox.grpo import GRPO_COLUMNS
    from juicebox.models import is_vision_language

    summary = json.loads(at(demo, "grpo", "summary", exp).read_text())
    assert (summary["algorithm"], summary["steps"]) == ("gspo", 4) and summary["prompts"] > 0
    with open(at(demo, "grpo", "metrics", exp)) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == GRPO_COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert is_vision_language(at(demo, "grpo", "model", exp)) == (exp == "vlm")
    evaluated = json.loads((demo / "results" / "eval.json").read_text())
    entry = evaluated["experiments"][exp]
    for bench, variants in entry["benchmarks"].items():
        assert "grpo" in variants and variants["grpo"]["model"].endswith(layout.path("grpo", "model", exp=exp))
        assert all("grpo_vs_sft" in deltas for deltas in entry["deltas"][bench].values())
    if exp == "ksigma":  # the ranked benchmark is the text experiments' math
        assert "grpo" in {r["variant"] for r in evaluated["ranking"] if r["experiment"] == exp}
