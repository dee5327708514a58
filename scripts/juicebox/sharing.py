"""Work shared between experiments: a stage two experiments would compute identically runs once.

Each stage of an experiment has a key: the hash of the settings it reads and of the key of the
stage it reads from (so two experiments share a stage only when everything upstream is the same
too). The first experiment (in config order) with a key owns the stage; the others' outputs of
that stage are hard links to the owner's (rules ``share_<stage>`` in rules/sharing.smk), so a
sweep over ``train.beta`` processes its data, trains its SFT model and rolls out once, and
trains DPO once per beta.

Stages, in order, with the experiment keys each one reads (besides the global seed):

* ``data`` (pool/, probe/, recipe/, processed/): sources, max_rejected_fraction, pool, recipe (the
  file's content), ksigma, dj, feedback (and, when the feedback probe uses another
  experiment's model, that experiment's ``sft`` key);
* ``sft`` (sft/): model, sft, replicate (the model half's seed);
* ``grpo`` (grpo/): grpo, rewards (after the SFT model);
* ``rollouts``, ``rewards``, ``pairs``, ``train`` (round1/<stage>/): the block of the same name
  (pairs: ``pairing``);
* ``rounds`` (round{r}/ for r >= 2): rounds, eval;
* ``eval_base``, ``eval_sft``, ``eval_grpo`` (eval/{bench}/{variant}.*), ``eval_dpo`` (round1/eval/...): eval,
  each variant after the stage that makes its model (base: model only, the same for every replicate).

Which paths each stage writes is the layout table's (:func:`juicebox.layout.share_patterns`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from .layout import RESULTS, share_patterns
from .sweeps import data_settings

# stage -> (the stage it reads from, the experiment keys it reads); the paths each one writes come
# from the layout table (juicebox.layout.share_patterns).
STAGES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "data": (None, ("sources", "max_rejected_fraction", "pool", "recipe", "ksigma", "dj", "feedback")),
    "sft": ("data", ("model", "sft", "replicate")),
    "grpo": ("sft", ("grpo", "rewards")),
    "rollouts": ("sft", ("rollouts",)),
    "rewards": ("rollouts", ("rewards",)),
    "pairs": ("rewards", ("pairing",)),
    "train": ("pairs", ("train",)),
    "rounds": ("train", ("rounds", "eval")),
    # each evaluated variant reads only its own model
    "eval_base": (None, ("model", "eval")),
    "eval_sft": ("sft", ("eval",)),
    "eval_dpo": ("train", ("eval",)),
    "eval_grpo": ("grpo", ("eval",)),
}


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: str) -> str | None:
    file = Path(path)
    return hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None


def stage_keys(experiments: dict[str, dict], seed: int) -> dict[str, dict[str, str]]:
    """``{stage: {experiment: key}}`` for resolved experiments."""
    keys: dict[str, dict[str, str]] = {stage: {} for stage in STAGES}
    pending: set[tuple[str, str]] = set()

    def key(exp: str, stage: str) -> str:
        if exp not in keys[stage]:
            if (exp, stage) in pending:
                raise ValueError(f"experiments.{exp}.feedback.from: the experiments' feedback probes form a cycle")
            pending.add((exp, stage))
            upstream, fields = STAGES[stage]
            settings = experiments[exp]
            payload = {"seed": seed, "upstream": key(exp, upstream) if upstream else None,
                       **{field: settings.get(field) for field in fields}}
            if stage == "data":  # settings that change nothing left out; the recipe by its content
                payload.update(data_settings(settings))
                payload["recipe"] = _file_digest(settings["recipe"]) or settings["recipe"]
                feedback = settings.get("feedback") or {}
                if feedback.get("enabled") and feedback.get("from") not in (None, exp):
                    payload["feedback_model"] = key(feedback["from"], "sft")
            keys[stage][exp] = _digest(payload)
            pending.discard((exp, stage))
        return keys[stage][exp]

    for exp in experiments:
        for stage in STAGES:
            key(exp, stage)
    return keys


def stages_of(pattern: str) -> set[str]:
    """The stages an output pattern (relative to results/{exp}/) can write: its wildcards filled in
    with a placeholder ({round} with 1 and 2, {variant} with each model variant)."""
    import re

    found = set()
    for variant in ("base", "sft", "dpo", "grpo"):
        for round_ in ("1", "2"):
            plain = re.sub(r"\{\w+\}", "x", pattern.replace("{variant}", variant).replace("{round}", round_))
            found.update(stage for stage in STAGES if re.fullmatch(share_patterns(stage)[0], plain)
                         or re.fullmatch(share_patterns(stage)[1] or "(?!)", plain))
    return found


def stages_written(pattern: str) -> set[str]:
    """The stages an output pattern of a rule (``results/{exp}/...``, wildcard constraints in it
    allowed) writes."""
    import re

    plain = re.sub(r"\{(\w+),[^}]*\}", r"{\1}", str(pattern))
    prefix = f"{RESULTS}/{{exp}}/"
    if not plain.startswith(prefix):
        return set()
    return stages_of(plain.removeprefix(prefix))


def producers(rules) -> dict[str, list[str]]:
    """Per stage, the names of the rules (Snakemake ``Rule`` objects) writing its outputs."""
    return {stage: [r.name for r in rules if any(stage in stages_written(out) for out in r.output)]
            for stage in STAGES}


def names_pattern(names) -> str:
    """A wildcard constraint matching exactly these experiment names (none: matches nothing)."""
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"


def owner_path(owner_of: dict[str, dict[str, str]], stage: str):
    """Input function of a share rule: the owner's file or folder of the requested ``{path}``."""
    return lambda wildcards: f"{RESULTS}/{owner_of[stage][wildcards.exp]}/{wildcards.path}"


def owners(experiments: dict[str, dict], seed: int, generated: Iterable[str] = ()) -> dict[str, dict[str, str]]:
    """``{stage: {experiment: owner}}``: the first experiment computing the same stage, in name
    order, experiments written in the config before those a sweep ``generated``."""
    later = set(generated)
    order = sorted(experiments, key=lambda exp: (exp in later, exp))
    result = {}
    for stage, by_exp in stage_keys(experiments, seed).items():
        first: dict[str, str] = {}
        for exp in order:
            first.setdefault(by_exp[exp], exp)
        result[stage] = {exp: first[k] for exp, k in by_exp.items()}
    return result


# Snakemake's marker in a directory output: it touches the borrower's after the share job, which
# through a hard link would make the owner's folder look newer than everything made from it.
SNAKEMAKE_MARKERS = (".snakemake_timestamp",)


def link_tree(source: str | Path, target: str | Path) -> None:
    """``target`` as hard links to ``source`` (a file, or a folder's files but Snakemake's
    markers), copied where the file system refuses links."""
    import os
    import shutil

    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link, symlinks=True,
                        ignore=shutil.ignore_patterns(*SNAKEMAKE_MARKERS))
    else:
        link(source, target)
