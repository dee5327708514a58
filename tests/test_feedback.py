"""Refinement from model feedback: model_stat_filter bounds against hand computation (as the
k-sigma tests), Data-Juicer never seeing those entries, processing's drop with its ledger key and
precision/recall against hand-labelled noise, config errors, and the rule order of a dry run."""

import copy
import math
import re
import statistics

import pytest
import yaml

from conftest import ROOT, run_snakemake
from juicebox import dj, layout
from juicebox.config import ConfigError, compose, resolve
from juicebox.io import read_yaml, write_yaml
from juicebox.ksigma import (MAD_SCALE, MODEL_STAT_FILTER, KSigmaSettings, refine_recipe, split_recipe,
                             with_feedback_filters)
from juicebox.ledger import check
from juicebox.model_probe import apply_model_filters, feedback_report, process_with_feedback

LOSSES = [1.0, 1.2, 1.1, 0.9, 1.3, 1.0, 1.1, 6.0]  # one wrong gold answer the model finds very unlikely
TOKENS = [3, 4, 5, 4, 3, 5, 4, 40]


def columns(**stats):
    return {stat: [[v] for v in values] for stat, values in stats.items()}


def rows(changes, arg):
    return [c for c in changes if c["arg"] == arg]


def entry(**args):
    return {MODEL_STAT_FILTER: args}


def test_only_the_named_side_is_refined_by_sigma():
    recipe = {"process": [entry(stat="model_loss", max_value=None)]}
    refined, changes = refine_recipe(recipe, columns(model_loss=LOSSES), KSigmaSettings(k=2.0), dj.op_signature)
    assert len(changes) == 1  # min_value was not named: no lower bound
    mean, std = statistics.fmean(LOSSES), statistics.stdev(LOSSES)
    (upper,) = changes
    assert upper["computed"] == pytest.approx(mean + 2 * std) == refined["process"][0][MODEL_STAT_FILTER]["max_value"]
    assert (upper["op"], upper["op_index"], upper["arg"], upper["stat"], upper["k"], upper["mode"]) == \
        (MODEL_STAT_FILTER, 0, "max_value", "model_loss", 2.0, "sigma")
    assert upper["before"] is None and not upper["user_set"] and not upper["clamped"]
    assert upper["drop_fraction"] == pytest.approx(1 / 8) and upper["drop_fraction_before"] == 0.0
    assert "min_value" not in refined["process"][0][MODEL_STAT_FILTER]


def test_mad_mode_catches_the_outlier_and_lower_bound_is_clamped_at_zero():
    recipe = {"process": [entry(stat="model_loss", min_value=None, max_value=None)]}
    settings = KSigmaSettings(k=3.0, per_op={MODEL_STAT_FILTER: {"mode": "mad"}})
    _, changes = refine_recipe(recipe, columns(model_loss=LOSSES), settings, dj.op_signature)
    median = statistics.median(LOSSES)
    mad = statistics.median(abs(v - median) for v in LOSSES)
    (lower,), (upper,) = rows(changes, "min_value"), rows(changes, "max_value")
    assert upper["mode"] == "mad" and upper["computed"] == pytest.approx(median + 3 * MAD_SCALE * mad)
    assert upper["drop_fraction"] == pytest.approx(1 / 8)  # only the 6.0
    # median - 3 * 1.4826 * MAD = 1.1 - 0.4448 > 0: not clamped; with k = 10 it would be below 0
    assert lower["computed"] == pytest.approx(median - 3 * MAD_SCALE * mad) and not lower["clamped"]
    _, changes = refine_recipe(recipe, columns(model_loss=LOSSES), KSigmaSettings(k=10.0), dj.op_signature)
    (lower,) = rows(changes, "min_value")
    assert lower["computed"] < 0 and lower["after"] == 0.0 and lower["clamped"]


def test_pass_rate_clamped_to_one_and_written_bound_never_loosened():
    rates = [0.0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 1.0]
    recipe = {"process": [entry(stat="pass_rate", min_value=0.3, max_value=None)]}
    _, changes = refine_recipe(recipe, columns(pass_rate=rates), KSigmaSettings(k=2.0), dj.op_signature)
    mean, std = statistics.fmean(rates), statistics.stdev(rates)
    (lower,), (upper,) = rows(changes, "min_value"), rows(changes, "max_value")
    assert lower["computed"] == pytest.approx(mean - 2 * std) and lower["computed"] < 0.3
    assert lower["after"] == 0.3 and lower["user_set"] and lower["before"] == 0.3  # the tighter written bound stays
    assert upper["computed"] == pytest.approx(mean + 2 * std) and upper["computed"] > 1
    assert upper["after"] == 1.0 and upper["clamped"]
    _, changes = refine_recipe(recipe, columns(pass_rate=rates), KSigmaSettings(k=2.0, allow_loosen=True),
                               dj.op_signature)
    assert rows(changes, "min_value")[0]["after"] == 0.0  # loosened, then clamped at 0


def test_integer_stat_rounded_inwards():
    recipe = {"process": [entry(stat="model_tokens", min_value=None, max_value=None)]}
    refined, changes = refine_recipe(recipe, columns(model_tokens=TOKENS), KSigmaSettings(k=0.5), dj.op_signature)
    mean, std = statistics.fmean(TOKENS), statistics.stdev(TOKENS)
    (lower,), (upper,) = rows(changes, "min_value"), rows(changes, "max_value")
    assert lower["after"] == math.ceil(mean - 0.5 * std) and isinstance(lower["after"], int)
    assert upper["after"] == math.floor(mean + 0.5 * std) and isinstance(upper["after"], int)


def test_select_refines_only_the_model_filters_and_feedback_filters_are_appended():
    recipe = {"process": [{"text_length_filter": {"min_len": 10, "max_len": 5000}}]}
    feedback = {"enabled": True, "filters": [{"stat": "model_loss", "max_value": None}]}
    full = with_feedback_filters(recipe, feedback)
    assert full["process"][-1] == entry(stat="model_loss", max_value=None) and len(recipe["process"]) == 1
    assert with_feedback_filters(recipe, {**feedback, "enabled": False}) is recipe
    stats = {**columns(model_loss=LOSSES), **columns(text_len=[20, 30, 40, 50, 60, 70, 80, 90])}
    refined, changes = refine_recipe(full, stats, KSigmaSettings(k=2.0), dj.op_signature,
                                     select=lambda op: op == MODEL_STAT_FILTER)
    assert [c["op"] for c in changes] == [MODEL_STAT_FILTER]
    assert refined["process"][0] == recipe["process"][0]  # Data-Juicer's bounds as written
    _, both = refine_recipe(full, stats, KSigmaSettings(k=2.0), dj.op_signature)
    assert [c["op"] for c in both] == ["text_length_filter", "text_length_filter", MODEL_STAT_FILTER]


def test_model_filter_entries_are_checked():
    with pytest.raises(ValueError, match=r"process\[1\]\.model_stat_filter\.stat: 'model_los' is no model stat; "
                                         r"known: model_loss, model_tokens"):
        split_recipe({"process": [{"clean_html_mapper": None}, entry(stat="model_los", max_value=1)]})
    with pytest.raises(ValueError, match=r"process\[0\]\.model_stat_filter: names no bound"):
        split_recipe({"process": [entry(stat="model_loss")]})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max'\]"):
        split_recipe({"process": [entry(stat="model_loss", max=2)]})


LABELS = {"a": "clean", "b": "clean", "c": "wrong_answer", "d": "wrong_answer", "e": "clean",
          "f": "markup", "g": "mismatched_image", "h": "clean", "i": None}
LOSS = {"a": 0.5, "b": 0.9, "c": 5.0, "d": 0.8, "e": 4.0, "g": 6.0, "h": 1.0, "i": 7.0}  # f: no target


def labelled_records():
    out = []
    for rid, label in LABELS.items():
        text = f"What is the sum of {ord(rid)} and {ord(rid) % 7}? Give the number."
        if rid == "f":
            text = "x"  # the text filter drops it before the model filters
        out.append({"id": rid, "task": "math", "prompt": text, "answer": "1",
                    "meta": {"noise": label} if label else {}})
    return out


def test_processing_drops_outside_the_bound_and_reports_precision_recall(tmp_path):
    recipe_path = tmp_path / "recipe.yaml"
    write_yaml(recipe_path, {"text_keys": "text", "process": [
        {"text_length_filter": {"min_len": 5}}, entry(stat="model_loss", max_value=3.0)]})
    records = labelled_records()
    # Data-Juicer gets the recipe without the model filter (it has no op of that name) ...
    kept, counts = dj.process(records, str(recipe_path), str(tmp_path / "scratch"), {"np": 1})
    assert [c["op"] for c in counts] == ["text_length_filter"] and "f" not in {r["id"] for r in kept}
    # ... and the model filter runs after its ops, on the model stats.
    _, filters = split_recipe(read_yaml(recipe_path))
    reached = kept
    kept, model_counts, dropped = apply_model_filters(kept, filters, {k: {"model_loss": v} for k, v in LOSS.items()})
    assert sorted(r["id"] for r in dropped) == ["c", "e", "g", "i"]  # loss > 3
    assert model_counts == [{"op": "model_stat_filter:model_loss", "in": 8, "kept": 4}]
    stage = dj.process_stage(len(records), len(kept), counts + model_counts)
    assert stage == {"in": 9, "kept": 4, "dropped": {"text_length_filter": 1, "model_stat_filter:model_loss": 4},
                     "rejected": 0}
    check({"stages": {"process": stage}})
    report = feedback_report(reached, dropped)
    assert report["reached"] == 8 and report["dropped"] == 4
    assert report["dropped_noise"] == {"clean": 1, "mismatched_image": 1, "unlabelled": 1, "wrong_answer": 1}
    labels = report["labels"]
    assert labels["wrong_answer"] == {"reached": 2, "dropped": 1, "precision": 0.25, "recall": 0.5}
    assert labels["mismatched_image"] == {"reached": 1, "dropped": 1, "precision": 0.25, "recall": 1.0}
    assert labels["clean"] == {"reached": 4, "dropped": 1, "precision": 0.25, "recall": 0.25}
    assert labels["any_noise"] == {"reached": 3, "dropped": 2, "precision": 0.5, "recall": pytest.approx(2 / 3)}
    assert "markup" not in labels  # dropped by Data-Juicer: it never reached the model filter


@pytest.mark.parametrize("before_ops, kept_ids, dropped_by", [
    (False, [], {"document_deduplicator": 1, "model_stat_filter:model_loss": 1}),
    (True, ["w-clean"], {"model_stat_filter:model_loss": 1, "document_deduplicator": 0}),
])
def test_model_filters_before_or_after_a_deduplicator(tmp_path, before_ops, kept_ids, dropped_by):
    # A wrong answer ahead of its clean twin (same question): deduplicating first keeps the wrong
    # one, which the model filter then drops (both gone); filtering first keeps the clean one.
    question = "Ava has 3 apples and buys 4 more. How many apples does she have now?"
    records = [{"id": "w-wrong", "task": "math", "prompt": question, "answer": "9", "meta": {"noise": "wrong_answer"}},
               {"id": "w-clean", "task": "math", "prompt": question, "answer": "7", "meta": {"noise": "clean"}}]
    recipe = tmp_path / "recipe.yaml"
    write_yaml(recipe, {"text_keys": "text", "process": [{"document_deduplicator": {}},
                                                         entry(stat="model_loss", max_value=3.0)]})
    stats = {"w-wrong": {"model_loss": 6.0}, "w-clean": {"model_loss": 0.5}}
    kept, counts, report = process_with_feedback(records, str(recipe), str(tmp_path / "scratch"), {"np": 1}, stats,
                                                 before_ops)
    assert [r["id"] for r in kept] == kept_ids
    stage = dj.process_stage(2, len(kept), counts)
    assert stage["dropped"] == dropped_by and list(stage["dropped"]) == list(dropped_by)  # in the order run
    assert report["labels"]["wrong_answer"] == {"reached": 1, "dropped": 1, "precision": 1.0, "recall": 1.0}
    assert report["reached"] == (2 if before_ops else 1)


def test_a_recipe_with_model_filters_needs_the_model_stats(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    write_yaml(recipe, {"text_keys": "text", "process": [entry(stat="model_loss", max_value=3.0)]})
    with pytest.raises(ValueError, match="set feedback.enabled: true"):
        process_with_feedback(labelled_records(), str(recipe), str(tmp_path / "scratch"), {"np": 1}, None)


def test_a_record_without_the_stat_is_kept_and_filters_chain():
    records = [{"id": i} for i in ("a", "b", "c", "d")]
    stats = {"a": {"model_loss": 1.0, "pass_rate": 0.0}, "b": {"model_loss": 9.0}, "c": {"pass_rate": 1.0},
             "d#s1": {}}
    filters = [{"stat": "model_loss", "max_value": 2.0}, {"stat": "pass_rate", "min_value": 0.5, "max_value": None}]
    kept, counts, dropped = apply_model_filters(records, filters, stats)
    assert [r["id"] for r in kept] == ["c", "d"] and [r["id"] for r in dropped] == ["b", "a"]
    assert counts == [{"op": "model_stat_filter:model_loss", "in": 4, "kept": 3},
                      {"op": "model_stat_filter:pass_rate", "in": 3, "kept": 2}]
    # the same stat twice: the ledger names them by position
    assert dj.process_stage(4, 2, [{"op": "model_stat_filter:model_loss", "in": 4, "kept": 3},
                                   {"op": "model_stat_filter:model_loss", "in": 3, "kept": 2}])["dropped"] == \
        {"model_stat_filter:model_loss#0": 1, "model_stat_filter:model_loss#1": 1}


def test_data_juicer_recipe_leaves_out_model_filters(tmp_path):
    plain = tmp_path / "plain.yaml"
    write_yaml(plain, {"process": [{"text_length_filter": {"min_len": 5}}]})
    assert dj.dj_recipe(str(plain), str(tmp_path)) == str(plain)
    mixed = tmp_path / "mixed.yaml"
    write_yaml(mixed, {"text_keys": "text", "process": [entry(stat="model_loss", max_value=2.0),
                                                        {"text_length_filter": {"min_len": 5}}]})
    stripped = read_yaml(dj.dj_recipe(str(mixed), str(tmp_path / "work")))
    assert stripped == {"text_keys": "text", "process": [{"text_length_filter": {"min_len": 5}}]}


# --- config ---------------------------------------------------------------------------------

SCHEMA = str(ROOT / "config" / "config.schema.yaml")


def ci_config(**experiments):
    """The CI config (over the embedded default) with these experiments added to its own."""
    cfg = compose([ROOT / "config" / "config.yaml"], [ROOT / ".test" / "config_ci" / "config.yaml"], {})
    cfg["experiments"].update(copy.deepcopy(experiments))
    return cfg


def resolved(cfg):
    return resolve(cfg, SCHEMA, produced=lambda path: True)


FEEDBACK = {"enabled": True, "model": "sft", "from": "raw", "filters": [{"stat": "model_loss", "max_value": None}]}


def test_feedback_block_resolves_with_defaults():
    exp = resolved(ci_config(fb={"feedback": FEEDBACK}))["experiments"]["fb"]["feedback"]
    assert exp == {**FEEDBACK, "batch_size": 16, "max_length": 1024, "threads": 1, "pass_threshold": 1.0,
                   "refine": True, "before_ops": False}
    assert resolved(ci_config())["experiments"]["raw"]["feedback"]["enabled"] is False


@pytest.mark.parametrize("feedback, message", [
    ({"from": "rwa"}, r"experiments\.fb\.feedback\.from: no experiment named 'rwa' \(did you mean 'raw'\?\)"),
    ({"from": None}, r"experiments\.fb\.feedback\.model: sft of this experiment .* \(a cycle\)"),
    ({"from": "fb"}, r"experiments\.fb\.feedback\.model: sft of this experiment"),
    ({"filters": [{"stat": "model_los", "max_value": None}]},
     r"experiments\.fb\.feedback\.filters\[0\]\.stat: unknown model stat 'model_los' \(did you mean 'model_loss'\?\); "
     r"known: model_loss, model_tokens, reward_mean, reward_std, pass_rate"),
    ({"model": "base", "from": None, "filters": [{"stat": "pass_rate", "min_value": None}]},
     r"experiments\.fb\.feedback\.filters\[0\]\.stat: pass_rate comes from the rollouts of the `from` experiment"),
    ({"filters": []}, r"experiments\.fb\.feedback\.filters: feedback is enabled but no filter"),
    ({"filters": [{"stat": "model_loss"}]}, r"experiments\.fb\.feedback\.filters\[0\]: names no bound"),
    ({"refine": False}, r"experiments\.fb\.feedback\.filters\[0\]: experiments\.fb\.feedback\.refine is false"),
    ({"filters": [{"stat": "model_loss", "max": 1}]},
     r"experiments\.fb\.feedback\.filters\.0: unknown key\(s\) \['max'\]"),
])
def test_feedback_config_errors_name_the_key(feedback, message):
    with pytest.raises(ConfigError, match=message):
        resolved(ci_config(fb={"feedback": {**FEEDBACK, **feedback}}))


def test_sft_probe_needs_sft_and_experiments_may_not_feed_each_other():
    with pytest.raises(ConfigError, match=r"experiments\.fb\.feedback\.model: experiment 'nosft' has sft\.enabled: "
                                          r"false"):
        resolved(ci_config(nosft={"sft": {"enabled": False}}, fb={"feedback": {**FEEDBACK, "from": "nosft"}}))
    with pytest.raises(ConfigError, match=r"feedback experiments form a cycle \((one -> two -> one|two -> one -> "
                                          r"two)\)"):
        resolved(ci_config(one={"feedback": {**FEEDBACK, "from": "two"}},
                           two={"feedback": {**FEEDBACK, "model": "base", "from": "one"}}))
    # the base model of the experiment itself probes without a cycle
    resolved(ci_config(fb={"feedback": {**FEEDBACK, "model": "base", "from": None}}))


def test_recipe_model_filters_need_feedback(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    write_yaml(recipe, {"process": [{"text_length_filter": {"min_len": 5}}, entry(stat="model_loss", max_value=2)]})
    with pytest.raises(ConfigError, match=r"experiments\.mine\.recipe: .* has model_stat_filter entries, which need "
                                          r"the model probe: set experiments\.mine\.feedback\.enabled: true"):
        resolved(ci_config(mine={"recipe": str(recipe)}))
    # with feedback on, the recipe's own entry is a filter (no feedback.filters needed)
    resolved(ci_config(mine={"recipe": str(recipe), "feedback": {**FEEDBACK, "filters": []}}))


# --- the workflow ---------------------------------------------------------------------------

@pytest.mark.workflow
def test_dry_run_probes_with_the_model_before_refining_and_processing(workdir):
    cfg = yaml.safe_load((ROOT / ".test" / "config_ci" / "config.yaml").read_text())
    cfg["experiments"]["feedback"] = {
        "ksigma": {"enabled": True, "k": 2},
        "feedback": {"enabled": True, "model": "sft", "from": "raw",
                     "filters": [{"stat": "model_loss", "max_value": None}, {"stat": "pass_rate", "min_value": None}]}}
    (workdir / "feedback.yaml").write_text(yaml.safe_dump(cfg))
    target = [layout.path("processed", "data", exp="feedback"),
              layout.path("probe", "model_histograms", exp="feedback")]
    proc = run_snakemake(workdir, *target, "--configfile", "feedback.yaml", "--rulegraph")
    edges = {(a, b) for a, b in re.findall(r'"(\w+)" -> "(\w+)"', dot_labels(proc.stdout))}
    assert {("sft", "probe_model"), ("gather_rewards", "probe_model"), ("probe_model", "refine_recipe_ksigma"),
            ("probe_model", "process_data"), ("probe_model", "plot_model_thresholds"),
            ("refine_recipe_ksigma", "plot_model_thresholds")} <= edges
    # The dry run schedules raw's SFT model and rollouts' rewards, then the probe, then refinement and processing.
    proc = run_snakemake(workdir, *target, "--configfile", "feedback.yaml", "-n")
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: exp=(\w+)", proc.stdout, re.M)
    order = [job for job in jobs if job[1] == "feedback" or job[0] in ("sft", "gather_rewards")]
    assert [rule for rule, _ in order].count("probe_model") == 1
    position = {job: i for i, job in enumerate(order)}
    assert position[("sft", "raw")] < position[("gather_rewards", "raw")] < position[("probe_model", "feedback")] \
        < position[("refine_recipe_ksigma", "feedback")] < position[("process_data", "feedback")]
    # raw (no feedback) reads no model stats: its refine and processing wait for no model probe
    proc = run_snakemake(workdir, layout.path("processed", "data", exp="raw"), "--configfile", "feedback.yaml", "-n")
    assert "probe_model" not in proc.stdout and "refine_recipe_ksigma" in proc.stdout


def dot_labels(dot):
    """The rule graph's edges with rule names instead of node numbers (as "a" -> "b" lines)."""
    nodes = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.M))
    return "\n".join(f'"{nodes[a]}" -> "{nodes[b]}"' for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M))
