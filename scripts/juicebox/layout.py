"""Where every output lives: one table, stage → folder → files.

The rules' inputs and outputs, their logs and benchmark files, the final targets, the patterns of
the work shared between experiments (:mod:`juicebox.sharing`), the readers of ``results/eval.json``
(:mod:`juicebox.summary`) and the tests all take their paths from :data:`STAGES`; nothing else
writes a path under ``results/``.

A folder is a template under ``results/`` with Snakemake's wildcards: ``{exp}`` (the experiment),
``{round}`` (the DPO round: 1, 2, ...), ``{bench}``, ``{variant}``, ``{shard}``. The model half of
every DPO round, round 1 included, lives in ``results/{exp}/round{round}/``; what comes before the
rounds (the data half, the SFT warm start, the evaluation of the base and SFT models) lives in
``results/{exp}/``::

    results/{exp}/pool/ probe/ recipe/ processed/ ledger.json   data half
    results/{exp}/sft/                                          warm start
    results/{exp}/grpo/                                         online RL (GRPO / GSPO), beside DPO
    results/{exp}/eval/{bench}/{base,sft,grpo}[_blank].json(l)   models outside the DPO rounds
    results/{exp}/round{r}/policy/                              r >= 2: the merged policy it trains
    results/{exp}/round{r}/rollouts/ rewards/ pairs/ train/     the round's model half
    results/{exp}/round{r}/eval/{bench}/dpo[_blank].json(l)     the round's trained policy
    results/eval.json, results/eval_{bench}.png                 every experiment side by side

Logs and benchmark files follow the same scopes: ``results/logs/<rule>.log`` for a job of the
whole workflow, ``results/{exp}/logs/<rule>.log`` for one of an experiment, and
``results/{exp}/logs/round{round}/<rule>.log`` for one of a round (``benchmarks`` likewise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = "results"
MODELS = "resources/models"
# The embedded tiny models (`model: tiny`, `model: tiny_vlm`), built by rules/models.smk.
TINY_MODELS = {"tiny": f"{MODELS}/tiny-qwen2", "tiny_vlm": f"{MODELS}/tiny-llava"}
# The variants evaluated in results/{exp}/eval/ (the models outside the DPO rounds: made before them,
# or by online RL beside them), and from each round's policy.
BEFORE_ROUNDS = ("base", "sft", "grpo")
ROUND_VARIANTS = ("dpo",)
BLANK = "_blank"
# The embedded default's data and benchmark files (rule make_demo_data), under demo_data.outdir.
DEMO_FILES = {
    "math": "math.jsonl",
    "math_extra": "math_extra.csv",
    "vision": "vision.json",
    "vision_extra": "vision_extra.parquet",
    "bench_math": "bench/math_test.jsonl",
    "bench_pope": "bench/pope_test.jsonl",
    "bench_mmstar": "bench/mmstar_test.parquet",
    "bench_vqa": "bench/vqa_test.jsonl",
    "bench_caption": "bench/caption_test.json",
    "bench_synonyms": "bench/synonyms.txt",
    "controls_clean": "controls/math_clean.jsonl",
    "controls_wrong": "controls/math_wrong.jsonl",
    "manifest": "manifest.json",
}


@dataclass(frozen=True)
class Stage:
    """One stage's folder under ``results/`` and its outputs (name → path under the folder).

    ``dirs`` are the outputs that are folders (Snakemake ``directory()``); ``share`` names the
    stage of :mod:`juicebox.sharing` whose key decides which experiment computes it (round 1's
    stages: their own; a later round's: ``rounds``); ``targets`` are the outputs ``snakemake``
    builds by default for every experiment that has the stage.
    """

    folder: str
    files: dict[str, str]
    dirs: dict[str, str] = field(default_factory=dict)
    share: str | None = None
    targets: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        """``workflow``, ``experiment`` or ``round``: the folder its logs go to."""
        if "{round}" in self.folder:
            return "round"
        return "experiment" if "{exp}" in self.folder else "workflow"

    def outputs(self) -> dict[str, str]:
        return {**self.files, **self.dirs}


STAGES: dict[str, Stage] = {
    "demo_data": Stage("", {}),  # its files: DEMO_FILES, under the config's demo_data.outdir
    "pool": Stage("{exp}/pool", {"pool": "pool.jsonl", "rejected": "rejected.jsonl", "stage": "ledger_stage.json"},
                  {"images": "images"}, share="data"),
    "probe": Stage("{exp}/probe", {"stats": "stats.jsonl", "summary": "summary.json",
                                   "model_stats": "model_stats.jsonl", "model_summary": "model_summary.json"},
                   {"histograms": "histograms", "model_histograms": "model_histograms"}, share="data",
                   targets=("histograms",)),
    "recipe": Stage("{exp}/recipe", {"refined": "refined.yaml", "changes": "changes.json"}, share="data",
                    targets=("changes",)),
    "processed": Stage("{exp}/processed", {"data": "data.jsonl", "prompts": "prompts.jsonl",
                                           "stage": "ledger_stage.json", "summary": "summary.json", "ops": "ops.png"},
                       share="data",
                       targets=("data", "ops")),
    "ledger": Stage("{exp}", {"ledger": "ledger.json"}, targets=("ledger",)),
    "sft": Stage("{exp}/sft", {"metrics": "metrics.csv", "summary": "summary.json",
                               "prompt_answer": "prompt_answer.jsonl"}, {"model": "model"},
                 share="sft", targets=("model",)),
    "grpo": Stage("{exp}/grpo", {"metrics": "metrics.csv", "summary": "summary.json"}, {"model": "model"},
                  share="grpo", targets=("model",)),
    "eval": Stage("{exp}/eval/{bench}", {"predictions": "{variant}.jsonl", "metrics": "{variant}.json"}),
    "policy": Stage("{exp}/round{round}", {}, {"policy": "policy"},
                    share="rounds", targets=("policy",)),
    "rollouts": Stage("{exp}/round{round}/rollouts", {"rollouts": "rollouts.jsonl", "stage": "ledger_stage.json",
                                                      "shard": "shards/{shard}.jsonl"},
                      share="rollouts", targets=("rollouts",)),
    "rewards": Stage("{exp}/round{round}/rewards", {"scored": "scored.jsonl", "stage": "ledger_stage.json",
                                                    "summary": "summary.json", "shard": "shards/{shard}.jsonl",
                                                    "plot": "rewards.png"},
                     share="rewards", targets=("scored",)),
    "pairs": Stage("{exp}/round{round}/pairs", {"parquet": "pairs.parquet", "jsonl": "pairs.jsonl",
                                                "llamafactory": "pairs_llamafactory.jsonl",
                                                "rw_pair": "pairs_rw_pair.jsonl",
                                                "dataset_info": "dataset_info.json", "stage": "ledger_stage.json",
                                                "summary": "summary.json", "plot": "margins.png"},
                   share="pairs", targets=("parquet",)),
    "train": Stage("{exp}/round{round}/train", {"metrics": "metrics.csv", "summary": "summary.json",
                                                "plot": "metrics.png"}, {"adapter": "adapter"},
                   share="train", targets=("adapter",)),
    "round_eval": Stage("{exp}/round{round}/eval/{bench}", {"predictions": "{variant}.jsonl",
                                                            "metrics": "{variant}.json"}),
    "tracking": Stage("{exp}/tb/eval", {"done": "done.json"}),
    "models": Stage("", {}),  # the models built or downloaded under MODELS (logs only)
    "share": Stage("{exp}", {}),  # the hard links of work shared between experiments (logs only)
    "summary": Stage("", {"eval": "eval.json", "plot": "eval_{bench}.png"}),
}
# The stages each DPO round repeats after sampling from its policy, in order (the ledger's).
ROUND_STAGES = ("rollouts", "rewards", "pairs")


def _fill(template: str, wildcards: dict) -> str:
    """``template`` with the given wildcards filled in; the others stay Snakemake wildcards."""
    return re.sub(r"\{(\w+)\}", lambda m: str(wildcards[m[1]]) if m[1] in wildcards else m[0], template)


def folder(stage: str, root: str | Path = RESULTS, **wildcards) -> str:
    """A stage's folder (``results/{exp}/round{round}/rollouts``), with any wildcards given filled in."""
    return _fill(str(Path(root, STAGES[stage].folder)), wildcards)


def path(stage: str, name: str, root: str | Path = RESULTS, **wildcards) -> str:
    """One output of a stage (``path("train", "adapter")`` → ``results/{exp}/round{round}/train/adapter``)."""
    outputs = STAGES[stage].outputs()
    if name not in outputs:
        raise KeyError(f"stage {stage!r} has no output {name!r}; it has {sorted(outputs)}")
    return _fill(str(Path(root, STAGES[stage].folder, outputs[name])), wildcards)


def eval_stage(variant: str) -> str:
    """Where a variant's evaluation lives: ``eval`` for the models made before the rounds, else ``round_eval``."""
    return "eval" if variant.removesuffix(BLANK) in BEFORE_ROUNDS else "round_eval"


def eval_path(name: str, variant: str, root: str | Path = RESULTS, **wildcards) -> str:
    """The ``metrics`` (``.json``) or ``predictions`` (``.jsonl``) file of one variant's evaluation;
    a trained variant's is in its round's folder (``round``, default 1)."""
    stage = eval_stage(variant)
    if stage == "round_eval":
        wildcards.setdefault("round", 1)
    return path(stage, name, root, variant=variant, **wildcards)


def log(stage: str, name: str) -> str:
    """The log file of a job of ``stage`` (``name`` may hold wildcards and folders)."""
    return _scoped("logs", stage, f"{name}.log")


def log_folder(stage: str, name: str) -> str:
    """A folder of logs of a job of ``stage`` (the servers an engine launches write theirs there)."""
    return _scoped("logs", stage, name)


def benchmark(stage: str, name: str) -> str:
    """The Snakemake benchmark file of a job of ``stage``."""
    return _scoped("benchmarks", stage, f"{name}.tsv")


def _scoped(kind: str, stage: str, name: str) -> str:
    scope = STAGES[stage].scope
    if scope == "workflow":
        return f"{RESULTS}/{kind}/{name}"
    if scope == "experiment":
        return f"{RESULTS}/{{exp}}/{kind}/{name}"
    return f"{RESULTS}/{{exp}}/{kind}/round{{round}}/{name}"


def _regex(template: str) -> str:
    """A folder template under ``results/{exp}/`` as a regular expression of round 1's folder."""
    rel = template.removeprefix("{exp}").lstrip("/")
    return re.escape(rel).replace(re.escape("{round}"), "1").replace(re.escape("{bench}"), "[^/]+")


def share_patterns(share: str) -> tuple[str, str | None]:
    """Regular expressions of the paths under ``results/{exp}/`` that sharing stage ``share``
    (:mod:`juicebox.sharing`) writes: (files, folders or None). Round 1's stages are their own
    sharing stages; everything of a later round belongs to ``rounds``; ``eval_<variant>`` is the
    evaluation of one variant (and its blank-image ablation), in round 1's folder if trained."""
    if share == "rounds":
        later = "round(?!1/)[0-9]+"
        files = [f"{later}/.+"]
        dirs = [f"{later}/{_regex(stage.folder).removeprefix('round1').lstrip('/')}/{re.escape(d)}".replace("//", "/")
                for stage in STAGES.values() if "{round}" in stage.folder for d in stage.dirs.values()]
    elif share.startswith("eval_"):
        variant = share.removeprefix("eval_")
        files = [rf"{_regex(STAGES[eval_stage(variant)].folder)}/{variant}(?:{BLANK})?\.jsonl?"]
        dirs = []
    else:
        stages = [stage for stage in STAGES.values() if stage.share == share]
        if not stages:
            raise KeyError(f"no stage shares as {share!r}")
        files = [f"{_regex(stage.folder)}/.+" for stage in stages]
        dirs = [f"{_regex(stage.folder)}/{re.escape(d)}" for stage in stages for d in stage.dirs.values()]
    exclude = f"(?!(?:{'|'.join(dirs)})$)" if dirs else ""
    return f"{exclude}(?:{'|'.join(files)})", "|".join(dirs) or None
