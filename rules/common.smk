import json
import re
import shlex
import types
from pathlib import Path

from juicebox import cluster, cpu, layout
from juicebox import tracking as tracking_lib
from juicebox.config import compose, resolve
from juicebox.layout import ROUND_STAGES, TINY_MODELS
from juicebox.models import is_hub_id, model_slug
from juicebox.shards import shard_names

SCRIPTS = Path(workflow.basedir) / "scripts"
cluster.export_checkout(workflow.basedir)

# The config is composed again from the files, read strictly (a key given twice is an error
# naming its line): each --configfile is laid over config/config.yaml with juicebox's merge (a
# block naming another type replaces the demo's), and one that defines experiments replaces the
# demo's experiments instead of merging into them.
USER_CONFIGFILES = [Path(f).absolute() for f in workflow.config_settings.configfiles]
composed = compose(
    [f for f in workflow.configfiles if Path(f).absolute() not in USER_CONFIGFILES],
    USER_CONFIGFILES,
    workflow.config_settings.config,
)
config.clear()
config.update(composed)

DEMO_OUTDIR = (config.get("demo_data") or {}).get("outdir", "results/demo_data")
DEMO_FILES = {name: f"{DEMO_OUTDIR}/{file}" for name, file in layout.DEMO_FILES.items()}


def made_by_workflow(path):
    """Whether the workflow makes this file (the demo data, or an output under results/<experiment>/)."""
    parts = Path(path).parts
    return path in DEMO_FILES.values() or (
        len(parts) > 2
        and parts[0] == layout.RESULTS
        and parts[1] in (config.get("experiments") or {})
    )


# Validate the whole config (and each resolved experiment) before any job is scheduled.
CONFIG = resolve(
    config,
    str(Path(workflow.basedir) / "config" / "config.schema.yaml"),
    made_by_workflow,
)
EXPERIMENTS = CONFIG["experiments"]
DEMO = CONFIG["demo_data"]["outdir"]
if CONFIG["cpu_reproducible"]:
    # Before any job starts: every job (local, cluster, resumed) inherits the pinned code paths.
    cpu.pin()


wildcard_constraints:
    exp="|".join(re.escape(name) for name in EXPERIMENTS),
    variant=f"({'|'.join(layout.BEFORE_ROUNDS + layout.ROUND_VARIANTS)})({layout.BLANK})?",
    shard=r"\d+-of-\d+",
    bench=r"[A-Za-z0-9_.-]+",
    round=r"[1-9][0-9]*",


def experiment(wildcards):
    """The resolved settings of the experiment named by the {exp} wildcard."""
    return EXPERIMENTS[wildcards.exp]


def pool_inputs(wildcards):
    """Source files of an experiment's pool, and pools it merges in."""
    exp = experiment(wildcards)
    merged = [
        p
        for step in exp["pool"]["steps"]
        if step["op"] == "merge"
        for p in step["paths"]
    ]
    return [source["path"] for source in exp["sources"]] + merged


def outputs(stage, *names):
    """Named outputs of a stage for a rule's ``output:`` (its folders as ``directory()``)."""
    dirs = layout.STAGES[stage].dirs
    return {
        name: (
            directory(layout.path(stage, name))
            if name in dirs
            else layout.path(stage, name)
        )
        for name in names
    }


def data_outputs():
    """Every experiment's data-half targets (the layout's), with the model-feedback histograms."""
    return [
        layout.path(stage, name, exp=exp)
        for exp in EXPERIMENTS
        for stage in ("ledger", "pool", "probe", "recipe", "processed")
        for name in layout.STAGES[stage].targets
    ] + [
        layout.path("probe", "model_histograms", exp=exp)
        for exp in EXPERIMENTS
        if EXPERIMENTS[exp]["feedback"]["enabled"]
    ]


# --- model half ---------------------------------------------------------------------------


def base_model(wildcards):
    """Directory of the experiment's base model: an embedded tiny one, a local dir, or a download."""
    name = experiment(wildcards)["model"]
    if name in TINY_MODELS:
        return TINY_MODELS[name]
    if Path(name).exists() or not is_hub_id(name):
        return name
    return f"{layout.MODELS}/{model_slug(name)}"


def model_seed(wildcards):
    """The seed of a model-half job: the workflow's seed + replicate - 1 (replicates: in the config)."""
    return CONFIG["seed"] + experiment(wildcards)["replicate"] - 1


def eval_seed(wildcards):
    """The seed of an evaluation: the base model's (not trained) is every replicate's, the workflow's
    seed, so that its replicates share one evaluation; a trained variant's is its replicate's.
    """
    if wildcards.variant.removesuffix(layout.BLANK) == "base":
        return CONFIG["seed"]
    return model_seed(wildcards)


def policy_model(wildcards):
    """The model rollouts sample from and DPO starts from: the SFT model if the warm start is on."""
    if experiment(wildcards)["sft"]["enabled"]:
        return layout.path("sft", "model", exp=wildcards.exp)
    return base_model(wildcards)


def feedback_inputs(wildcards):
    """What the model probe (probe_model) reads: the feedback model (feedback.model of the
    feedback.from experiment: its base model or its SFT model) and, when that is another
    experiment, its scored rollouts (the reward stats)."""
    feedback = experiment(wildcards)["feedback"]
    source = feedback["from"] or wildcards.exp
    if feedback["model"] == "sft":
        inputs = {"model": layout.path("sft", "model", exp=source)}
    else:
        inputs = {"model": base_model(types.SimpleNamespace(exp=source))}
    if source != wildcards.exp:
        inputs["scored"] = layout.path("rewards", "scored", exp=source, round=1)
    return inputs


def feedback_model_stats(wildcards):
    """The model probe's stats when the experiment's model feedback is on (else nothing): read by
    refine_recipe_ksigma and process_data."""
    if experiment(wildcards)["feedback"]["enabled"]:
        return layout.path("probe", "model_stats", exp=wildcards.exp)
    return []


def variants(exp):
    """Model variants evaluated for an experiment; with eval.blank_images (true: every variant, or
    a list of them) those also with every image replaced by a blank one (``<variant>_blank``).
    """
    settings = EXPERIMENTS[exp]
    models = [
        variant
        for variant, on in (
            ("base", True),
            ("sft", settings["sft"]["enabled"]),
            ("dpo", True),
            ("grpo", settings["grpo"]["enabled"]),
        )
        if on
    ]
    blank = EXPERIMENTS[exp]["eval"]["blank_images"]
    blanked = models if blank is True else [v for v in models if v in (blank or [])]
    return models + [f"{variant}_blank" for variant in blanked]


def variant_pattern(stage):
    """The variants evaluated in an evaluation stage (``eval``: before the rounds; ``round_eval``)."""
    names = layout.BEFORE_ROUNDS if stage == "eval" else layout.ROUND_VARIANTS
    return f"({'|'.join(names)})({layout.BLANK})?"


def variant_inputs(wildcards):
    """Model directory (and adapter) of one variant (the blank-image ablation uses its variant's);
    a trained variant's is its round's policy and adapter."""
    variant = wildcards.variant.removesuffix(layout.BLANK)
    if variant == "base":
        return {"model": base_model(wildcards)}
    if variant == "sft":
        if not experiment(wildcards)["sft"]["enabled"]:
            raise ValueError(
                f"experiment {wildcards.exp!r} has sft.enabled: false; it has no sft variant"
            )
        return {"model": layout.path("sft", "model", exp=wildcards.exp)}
    if variant == "grpo":
        return {"model": layout.path("grpo", "model", exp=wildcards.exp)}
    return {
        "model": round_policy(wildcards),
        "adapter": layout.path(
            "train", "adapter", exp=wildcards.exp, round=wildcards.round
        ),
    }


def shard_files(stage):
    """Input function: the shard files of a sharded stage ("rollouts" or "rewards") of one round."""

    def files(wildcards):
        count = experiment(wildcards)[stage]["shards"]
        return [
            layout.path(
                stage, "shard", exp=wildcards.exp, round=wildcards.round, shard=name
            )
            for name in shard_names(count)
        ]

    return files


# --- DPO rounds: round r samples from round r-1's policy with its adapter merged in ----------


def rounds_of(exp):
    """The DPO rounds of an experiment (1..rounds)."""
    return list(range(1, EXPERIMENTS[exp]["rounds"] + 1))


def later_rounds(exp):
    """The DPO rounds after the first of an experiment (2..rounds)."""
    return rounds_of(exp)[1:]


def policy_of_round(wildcards, r):
    """The model DPO round ``r`` samples from and trains: round 1's is the policy (SFT or base); a
    later round's is the previous round's policy with its adapter merged in (rule merge_policy).
    """
    if r == 1:
        return policy_model(wildcards)
    return layout.path("policy", "policy", exp=wildcards.exp, round=r)


def round_policy(wildcards):
    """The policy of round {round}."""
    return policy_of_round(wildcards, int(wildcards.round))


def previous_policy(wildcards):
    """The policy of the round before {round}."""
    return policy_of_round(wildcards, int(wildcards.round) - 1)


def previous_adapter(wildcards):
    """The DPO adapter the round before {round} trained."""
    return layout.path(
        "train", "adapter", exp=wildcards.exp, round=int(wildcards.round) - 1
    )


def round_variants(exp):
    """Variants evaluated after every round: dpo, and dpo_blank with the blank-image ablation."""
    return [v for v in variants(exp) if layout.eval_stage(v) == "round_eval"]


def given_pairs(exp):
    """Whether the experiment's pairs come with its data (pairing type given: no rollouts, no rewards)."""
    return EXPERIMENTS[exp]["pairing"]["type"] == "given"


def round_stages(exp):
    """The stages of a DPO round of the experiment: rollouts, rewards, pairs; pairs alone when given."""
    return ("pairs",) if given_pairs(exp) else ROUND_STAGES


def pairs_input(wildcards):
    """What make_pairs pairs: the scored rollouts, or the processed records when the pairs are given."""
    if given_pairs(wildcards.exp):
        return layout.path("processed", "data", exp=wildcards.exp)
    return layout.path("rewards", "scored", exp=wildcards.exp, round=wildcards.round)


def ledger_stage_names(wildcards):
    """The ledger's stages of the experiment, in order: the data half's, then round 1's."""
    return ["pool", "process", *round_stages(wildcards.exp)]


def ledger_stage_files(wildcards):
    """The counts of the data stages and of round 1's stages, in the ledger's order."""
    return [
        layout.path(stage, "stage", exp=wildcards.exp, round=1)
        for stage in ("pool", "processed", *round_stages(wildcards.exp))
    ]


def round_ledger_inputs(wildcards):
    """Per later DPO round, its stages' counts and its DPO summary, in order."""
    return [
        layout.path(stage, name, exp=wildcards.exp, round=r)
        for r in later_rounds(wildcards.exp)
        for stage, name in [*((s, "stage") for s in ROUND_STAGES), ("train", "summary")]
    ]


def training_summaries(wildcards):
    """The summaries of the experiment's trainings (the ledger's training section): SFT if on, DPO."""
    summaries = {"dpo": layout.path("train", "summary", exp=wildcards.exp, round=1)}
    if experiment(wildcards)["sft"]["enabled"]:
        summaries = {
            "sft": layout.path("sft", "summary", exp=wildcards.exp)
        } | summaries
    return summaries


def benchmarks(exp):
    """Benchmark names of an experiment."""
    return list(EXPERIMENTS[exp]["eval"]["benchmarks"])


def eval_outputs():
    """Per experiment, benchmark and variant (a trained one after every round): the metrics and
    per-item files results/eval.json reads."""
    return [
        layout.eval_path(name, variant, exp=exp, bench=bench, round=r)
        for exp in EXPERIMENTS
        for bench in benchmarks(exp)
        for variant, rounds in [
            *((v, [1]) for v in variants(exp) if v not in round_variants(exp)),
            *((v, rounds_of(exp)) for v in round_variants(exp)),
        ]
        for r in rounds
        for name in ("metrics", "predictions")
    ]


def report_figures():
    """The figures rules/report.smk adds for `snakemake --report`: per experiment (round 1's), and
    per benchmark."""
    return [
        layout.path(stage, name, exp=exp, round=1)
        for exp in EXPERIMENTS
        for stage, name in (
            ("processed", "ops"),
            ("rewards", "plot"),
            ("pairs", "plot"),
        )
        if stage in ("processed", *round_stages(exp))
    ] + [
        layout.path("summary", "plot", bench=bench)
        for bench in dict.fromkeys(b for exp in EXPERIMENTS for b in benchmarks(exp))
    ]


def final_outputs():
    """Everything `snakemake` builds by default: results/eval.json, the per-experiment ledgers, figures,
    and with a tracker on the evaluation logged to it."""
    return (
        [layout.path("summary", "eval")]
        + data_outputs()
        + [layout.path("train", "plot", exp=exp, round=1) for exp in EXPERIMENTS]
        + report_figures()
        + tracking_outputs()  # rules/tracking.smk
        + model_outputs()
    )


def model_outputs():
    """The model half's main files of every experiment and round (the layout's targets), so that
    each has them in its own folder also when another experiment computed them (rules/sharing.smk).
    """
    return [
        layout.path(stage, name, exp=exp, round=r)
        for exp in EXPERIMENTS
        for stage in ("sft", "grpo", "policy", *round_stages(exp), "train")
        if stage not in ("sft", "grpo") or EXPERIMENTS[exp][stage]["enabled"]
        for r in (rounds_of(exp) if layout.STAGES[stage].scope == "round" else [1])
        if stage != "policy" or r > 1
        for name in layout.STAGES[stage].targets
    ]


# --- GPU resources and environments (juicebox.cluster; the slurm profile makes them sbatch flags) ---

ACCELERATE_PRESETS = Path(workflow.basedir) / "resources" / "accelerate"


def engine_env(stage, cpu_env):
    """Conda env of a rollout/eval job: envs/vllm.yaml when its engine launches vLLM servers."""
    return lambda w: f"../{cluster.engine_env(experiment(w)[stage], cpu_env)}"


def reward_gpus(wildcards):
    """A reward shard wants a GPU when one of its rewards runs a model."""
    return cluster.reward_gpus(experiment(wildcards)["rewards"]["functions"])


def reward_inputs(wildcards):
    """The workflow's outputs that a reward's options name (a model an experiment trains, used by
    divide_conquer as writer or labeller): inputs of the reward shard, so that they are made first.
    """
    found = set()

    def walk(value):
        if isinstance(value, str) and made_by_workflow(value):
            found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(experiment(wildcards)["rewards"]["functions"])
    return sorted(found)


def launcher(settings):
    """How a training script is started (python, accelerate launch, or srun over nodes)."""
    return cluster.launcher(
        settings, ACCELERATE_PRESETS, SCRIPTS / "accelerate_multinode.sh"
    )


# --- tracking (rules/tracking.smk; the trainings log through TRL's report_to) ---------------


def training_tracking(wildcards, stage):
    """The --tracking JSON of a training job (sft in rules/models.smk; dpo, also of a later DPO round, and
    grpo in rules/train.smk): where its curves go besides metrics.csv (tracking: in the config).
    """
    name = tracking_lib.stage_name(stage, wildcards.get("round", 1))
    return json.dumps(
        tracking_lib.run_settings(CONFIG["tracking"], wildcards.exp, name),
        sort_keys=True,
    )


# A tracker turned on whose package is missing stops the run before any job; with conda envs,
# the jobs' own envs have them and the jobs check for themselves.
if "CONDA" not in {m.name for m in workflow.deployment_settings.deployment_method}:
    tracking_lib.check_installed(CONFIG["tracking"])


def tracking_outputs():
    """Per experiment, the marker track_eval writes, when a tracker is on (final_outputs)."""
    if not tracking_lib.active(CONFIG["tracking"]):
        return []
    return [layout.path("tracking", "done", exp=exp) for exp in EXPERIMENTS]
