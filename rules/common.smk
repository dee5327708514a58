import json
import shlex
import sys
from pathlib import Path

SCRIPTS = Path(workflow.basedir) / "scripts"
sys.path.insert(0, str(SCRIPTS))

from juicebox import cluster  # noqa: E402
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


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    variant="(base|sft|dpo)(_blank)?",
    shard=r"\d+-of-\d+",
    bench=r"[A-Za-z0-9_.-]+",


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
    """Input function: the shard files of a sharded stage ("rollouts" or "rewards") of an experiment."""

    def files(wildcards):
        count = experiment(wildcards)[stage]["shards"]
        return [
            f"results/{wildcards.exp}/{stage}/shards/{name}.jsonl"
            for name in shard_names(count)
        ]

    return files


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
    """Per experiment, benchmark and variant: the metrics file results/eval.json gathers."""
    return [
        f"results/{exp}/eval/{bench}/{variant}.json"
        for exp in EXPERIMENTS
        for bench in benchmarks(exp)
        for variant in variants(exp)
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
    """Everything `snakemake` builds by default: results/eval.json, the per-experiment ledgers, figures."""
    return (
        ["results/eval.json"]
        + [f"results/{exp}/ledger.json" for exp in EXPERIMENTS]
        + data_outputs()
        + [f"results/{exp}/train/metrics.png" for exp in EXPERIMENTS]
        + report_figures()
    )


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
