import json
import re
import shlex
import sys
import types
from pathlib import Path

SCRIPTS = Path(workflow.basedir) / "scripts"
sys.path.insert(0, str(SCRIPTS))

from juicebox import cluster, cpu  # noqa: E402
from juicebox import tracking as tracking_lib  # noqa: E402
from juicebox.config import compose, resolve  # noqa: E402
from juicebox.models import is_hub_id, model_slug  # noqa: E402
from juicebox.shards import shard_names  # noqa: E402

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
DEMO_FILES = {
    "math": f"{DEMO_OUTDIR}/math.jsonl",
    "math_extra": f"{DEMO_OUTDIR}/math_extra.csv",
    "vision": f"{DEMO_OUTDIR}/vision.json",
    "vision_extra": f"{DEMO_OUTDIR}/vision_extra.parquet",
    "bench_math": f"{DEMO_OUTDIR}/bench/math_test.jsonl",
    "bench_pope": f"{DEMO_OUTDIR}/bench/pope_test.jsonl",
    "bench_mmstar": f"{DEMO_OUTDIR}/bench/mmstar_test.parquet",
    "bench_vqa": f"{DEMO_OUTDIR}/bench/vqa_test.jsonl",
    "bench_caption": f"{DEMO_OUTDIR}/bench/caption_test.json",
    "bench_synonyms": f"{DEMO_OUTDIR}/bench/synonyms.txt",
    "manifest": f"{DEMO_OUTDIR}/manifest.json",
}


def made_by_workflow(path):
    """Whether the workflow makes this file (the demo data, or an output under results/<experiment>/)."""
    parts = Path(path).parts
    return path in DEMO_FILES.values() or (
        len(parts) > 2
        and parts[0] == "results"
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
    variant="(base|sft|dpo)(_blank)?",
    shard=r"\d+-of-\d+",
    bench=r"[A-Za-z0-9_.-]+",
    round=r"[2-9]|[1-9][0-9]+",


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


def data_outputs():
    """Every experiment's data-half targets: processed data, ledger, recipe changes, histograms."""
    return [
        path
        for exp in EXPERIMENTS
        for path in (
            f"results/{exp}/processed/data.jsonl",
            f"results/{exp}/ledger.json",
            f"results/{exp}/recipe/changes.json",
            f"results/{exp}/probe/histograms",
        )
    ] + [
        f"results/{exp}/probe/model_histograms"
        for exp in EXPERIMENTS
        if EXPERIMENTS[exp]["feedback"]["enabled"]
    ]


# --- model half ---------------------------------------------------------------------------

TINY_MODELS = {
    "tiny": "resources/models/tiny-qwen2",
    "tiny_vlm": "resources/models/tiny-llava",
}


def base_model(wildcards):
    """Directory of the experiment's base model: an embedded tiny one, a local dir, or a download."""
    name = experiment(wildcards)["model"]
    if name in TINY_MODELS:
        return TINY_MODELS[name]
    if Path(name).exists() or not is_hub_id(name):
        return name
    return f"resources/models/{model_slug(name)}"


def policy_model(wildcards):
    """The model rollouts sample from and DPO starts from: the SFT model if the warm start is on."""
    if experiment(wildcards)["sft"]["enabled"]:
        return f"results/{wildcards.exp}/sft/model"
    return base_model(wildcards)


def feedback_inputs(wildcards):
    """What the model probe (probe_model) reads: the feedback model (feedback.model of the
    feedback.from experiment: its base model or its SFT model) and, when that is another
    experiment, its scored rollouts (the reward stats)."""
    feedback = experiment(wildcards)["feedback"]
    source = feedback["from"] or wildcards.exp
    if feedback["model"] == "sft":
        inputs = {"model": f"results/{source}/sft/model"}
    else:
        inputs = {"model": base_model(types.SimpleNamespace(exp=source))}
    if source != wildcards.exp:
        inputs["scored"] = f"results/{source}/rewards/scored.jsonl"
    return inputs


def feedback_model_stats(wildcards):
    """The model probe's stats when the experiment's model feedback is on (else nothing): read by
    refine_recipe_ksigma and process_data."""
    if experiment(wildcards)["feedback"]["enabled"]:
        return f"results/{wildcards.exp}/probe/model_stats.jsonl"
    return []


def variants(exp):
    """Model variants evaluated for an experiment; with eval.blank_images (true: every variant, or
    a list of them) those also with every image replaced by a blank one (``<variant>_blank``).
    """
    models = (
        ["base", "sft", "dpo"]
        if EXPERIMENTS[exp]["sft"]["enabled"]
        else ["base", "dpo"]
    )
    blank = EXPERIMENTS[exp]["eval"]["blank_images"]
    blanked = models if blank is True else [v for v in models if v in (blank or [])]
    return models + [f"{variant}_blank" for variant in blanked]


def variant_inputs(wildcards):
    """Model directory (and adapter) of one variant (the blank-image ablation uses its variant's)."""
    variant = wildcards.variant.removesuffix("_blank")
    if variant == "base":
        return {"model": base_model(wildcards)}
    if variant == "sft":
        if not experiment(wildcards)["sft"]["enabled"]:
            raise ValueError(
                f"experiment {wildcards.exp!r} has sft.enabled: false; it has no sft variant"
            )
        return {"model": f"results/{wildcards.exp}/sft/model"}
    return {
        "model": policy_model(wildcards),
        "adapter": f"results/{wildcards.exp}/train/adapter",
    }


def shard_files(stage):
    """Input function: the shard files of a sharded stage ("rollouts" or "rewards") of an
    experiment (of its DPO round when the rule has a {round} wildcard)."""

    def files(wildcards):
        count = experiment(wildcards)[stage]["shards"]
        return [
            f"{round_dir(wildcards.exp, wildcards.get('round', 1))}/{stage}/shards/{name}.jsonl"
            for name in shard_names(count)
        ]

    return files


# --- DPO rounds (rules/rounds.smk) ------------------------------------------------------------


def round_dir(exp, r):
    """Folder of the model half of DPO round ``r``: round 1 is results/{exp} itself."""
    return f"results/{exp}" if int(r) == 1 else f"results/{exp}/round{r}"


def round_policy(wildcards):
    """The model DPO round {round} samples from and trains: round 1's is the policy (SFT or base);
    a later round's is the previous round's policy with its adapter merged in."""
    r = int(wildcards.get("round", 1))
    return (
        policy_model(wildcards) if r == 1 else f"{round_dir(wildcards.exp, r)}/policy"
    )


def previous_policy(wildcards):
    """The policy of the round before {round}."""
    r = int(wildcards.round) - 1
    return (
        policy_model(wildcards) if r == 1 else f"{round_dir(wildcards.exp, r)}/policy"
    )


def previous_adapter(wildcards):
    """The DPO adapter the round before {round} trained."""
    return f"{round_dir(wildcards.exp, int(wildcards.round) - 1)}/train/adapter"


def later_rounds(exp):
    """The DPO rounds after the first of an experiment (2..rounds)."""
    return list(range(2, EXPERIMENTS[exp]["rounds"] + 1))


def round_variants(exp):
    """Variants evaluated after every later round: dpo, and dpo_blank with the blank-image ablation."""
    return [v for v in variants(exp) if v in ("dpo", "dpo_blank")]


# The stages each later DPO round repeats.
ROUND_STAGES = ("rollouts", "rewards", "pairs")


def round_ledger_inputs(wildcards):
    """Per later DPO round, its stages' counts and its DPO summary, in order."""
    return [
        f"{round_dir(wildcards.exp, r)}/{name}"
        for r in later_rounds(wildcards.exp)
        for name in (
            *(f"{stage}/ledger_stage.json" for stage in ROUND_STAGES),
            "train/summary.json",
        )
    ]


def training_summaries(wildcards):
    """The summaries of the experiment's trainings (the ledger's training section): SFT if on, DPO."""
    names = ["sft", "dpo"] if experiment(wildcards)["sft"]["enabled"] else ["dpo"]
    folders = {"sft": "sft", "dpo": "train"}
    return {
        name: f"results/{wildcards.exp}/{folders[name]}/summary.json" for name in names
    }


def benchmarks(exp):
    """Benchmark names of an experiment."""
    return list(EXPERIMENTS[exp]["eval"]["benchmarks"])


def eval_outputs():
    """Per experiment, benchmark and variant (and later DPO round): the metrics and per-item files
    results/eval.json reads."""
    return [
        f"{folder}/eval/{bench}/{variant}.{ext}"
        for exp in EXPERIMENTS
        for folder, variant_names in [
            (f"results/{exp}", variants(exp)),
            *((round_dir(exp, r), round_variants(exp)) for r in later_rounds(exp)),
        ]
        for bench in benchmarks(exp)
        for variant in variant_names
        for ext in ("json", "jsonl")
    ]


def report_figures():
    """The figures rules/report.smk adds for `snakemake --report`: per experiment, and per benchmark."""
    return [
        f"results/{exp}/{figure}"
        for exp in EXPERIMENTS
        for figure in ("processed/ops.png", "rewards/rewards.png", "pairs/margins.png")
    ] + [
        f"results/eval_{bench}.png"
        for bench in dict.fromkeys(b for exp in EXPERIMENTS for b in benchmarks(exp))
    ]


def final_outputs():
    """Everything `snakemake` builds by default: results/eval.json, the per-experiment ledgers, figures,
    and with a tracker on the evaluation logged to it."""
    return (
        ["results/eval.json"]
        + [f"results/{exp}/ledger.json" for exp in EXPERIMENTS]
        + data_outputs()
        + [f"results/{exp}/train/metrics.png" for exp in EXPERIMENTS]
        + report_figures()
        + tracking_outputs()  # rules/tracking.smk
        + model_outputs()
    )


def model_outputs():
    """The model half's main files of every experiment (and later round), so that each has them in
    its own folder also when another experiment computed them (rules/sharing.smk)."""
    files = [
        "rollouts/rollouts.jsonl",
        "rewards/scored.jsonl",
        "pairs/pairs.parquet",
        "train/adapter",
    ]
    return [
        f"{folder}/{name}"
        for exp in EXPERIMENTS
        for folder in [
            f"results/{exp}",
            *(round_dir(exp, r) for r in later_rounds(exp)),
        ]
        for name in files + (["policy"] if folder != f"results/{exp}" else [])
    ] + [
        f"results/{exp}/sft/model"
        for exp in EXPERIMENTS
        if EXPERIMENTS[exp]["sft"]["enabled"]
    ]


# --- GPU resources and environments (juicebox.cluster; the slurm profile makes them sbatch flags) ---

ACCELERATE_PRESETS = Path(workflow.basedir) / "resources" / "accelerate"


def engine_env(stage, cpu_env):
    """Conda env of a rollout/eval job: envs/vllm.yaml when its engine launches vLLM servers."""
    return lambda w: f"../{cluster.engine_env(experiment(w)[stage], cpu_env)}"


def reward_gpus(wildcards):
    """A reward shard wants a GPU when one of its rewards runs a model."""
    return cluster.reward_gpus(experiment(wildcards)["rewards"]["functions"])


def launcher(settings):
    """How a training script is started (python, accelerate launch, or srun over nodes)."""
    return cluster.launcher(
        settings, ACCELERATE_PRESETS, SCRIPTS / "accelerate_multinode.sh"
    )


# --- tracking (rules/tracking.smk; the trainings log through TRL's report_to) ---------------


def training_tracking(wildcards, stage):
    """The --tracking JSON of a training job (sft in rules/models.smk; dpo in rules/train.smk, also of a later
    DPO round): where its curves go besides metrics.csv (tracking: in the config)."""
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
    return [f"results/{exp}/tb/eval/done.json" for exp in EXPERIMENTS]
