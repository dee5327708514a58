"""Probe via model inference: what a model makes of each pool record (the Data-Juicer sandbox's
``ProbeViaModelInferHook``), as stats that k-sigma can bound like Data-Juicer's.

Per record (``model_stats.jsonl`` holds ``{"id", "stats"}`` rows, the probe's ``stats.jsonl``
shape, so :func:`juicebox.ksigma.stat_columns` reads both):

* ``model_loss``: mean negative log-likelihood per token of the record's SFT target (its
  ``answer``, else its first reference: :func:`sft_target`, what SFT trains on) given its prompt
  as a chat, under the probe model; a vision-language model sees the record's images. The
  tokens scored are the target's and the chat template's end-of-turn token, as SFT trains on
  them; ``model_tokens`` counts them. The log-probs come from the ``dpo_implicit`` reward's
  batched scorer (:func:`juicebox.rewards.dpo_implicit.answer_logprobs`). A record without a
  target, or whose prompt and target exceed ``max_length`` tokens (text tokens; image tokens not
  counted), gets no model stats.
* ``reward_mean``, ``reward_std`` (population), ``pass_rate`` (share of samples whose reward is
  at least ``pass_threshold``): from the record's rollouts scored by another experiment
  (``rewards/scored.jsonl``), over the samples that got a reward; none for a record that was not
  rolled out or none of whose samples got one.

A gold answer the model finds very unlikely (high loss) marks a wrong answer or a caption that
does not fit its image: what text and image filters cannot see.
"""

from __future__ import annotations

import logging
import statistics

from . import dj
from .io import read_yaml
from .ksigma import split_recipe
from .models import load_model, tokenizer_of
from .records import prompt_messages, record_images, sft_target
from .rewards.dpo_implicit import answer_logprobs

log = logging.getLogger("juicebox")


def _length(processing, messages: list[dict], target: str) -> int:
    """Text tokens of the rendered prompt (generation prompt included) and the target."""
    tokenizer = tokenizer_of(processing)
    prompt = processing.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            + len(tokenizer(target, add_special_tokens=False)["input_ids"]))


def target_losses(model, processing, records: list[dict], vision: bool, batch_size: int = 16,
                  max_length: int | None = None) -> dict[str, dict]:
    """``{id: {"model_loss", "model_tokens"}}`` for the records that have an SFT target and fit in
    ``max_length`` tokens. ``processing`` is the model's tokenizer (text model: images are not
    shown, as a text model's SFT rows have none) or its processor (``vision``: images shown)."""
    ids, messages, targets, images = [], [], [], []
    too_long = 0
    for record in records:
        target = sft_target(record)
        if target is None:
            continue
        chat = prompt_messages(record["prompt"])
        if max_length is not None and _length(processing, chat, target) > max_length:
            too_long += 1
            continue
        ids.append(record["id"])
        messages.append(chat)
        targets.append(target)
        images.append(record_images(record) if vision else [])
    if too_long:
        log.info("%d record(s) longer than %d tokens get no model stats", too_long, max_length)
    logprobs = answer_logprobs(model, processing, messages, targets, batch_size, True, images)
    return {rid: {"model_loss": -statistics.fmean(lp), "model_tokens": len(lp)}
            for rid, lp in zip(ids, logprobs) if lp}


def reward_stats(scored: list[dict], pass_threshold: float) -> dict[str, dict]:
    """``{id: {"reward_mean", "reward_std", "pass_rate"}}`` from scored rollouts (the rewards
    stage's records with ``samples``), over each record's samples that have a reward."""
    out = {}
    for record in scored:
        rewards = [s["reward"] for s in record.get("samples") or [] if s.get("reward") is not None]
        if rewards:
            out[record["id"]] = {"reward_mean": statistics.fmean(rewards), "reward_std": statistics.pstdev(rewards),
                                 "pass_rate": sum(r >= pass_threshold for r in rewards) / len(rewards)}
    return out


def probe(records: list[dict], model_path: str, batch_size: int = 16, max_length: int | None = None,
          scored: list[dict] | None = None, pass_threshold: float = 1.0, device: str | None = None,
          dtype: str = "auto") -> list[dict]:
    """``[{"id", "stats"}]`` in pool order: each record's loss under the model at ``model_path``
    and, with ``scored`` rollouts, its reward stats (a record with neither has empty stats)."""
    loaded = load_model(model_path, dtype=dtype, device=device, padding_side="right")
    losses = target_losses(loaded.model, loaded.processing, records, loaded.vision, batch_size, max_length)
    rewards = reward_stats(scored, pass_threshold) if scored is not None else {}
    log.info("model stats for %d of %d records (%s), reward stats for %d", len(losses), len(records), model_path,
             sum(r["id"] in rewards for r in records))
    return [{"id": r["id"], "stats": {**losses.get(r["id"], {}), **rewards.get(r["id"], {})}} for r in records]


# --- processing: the model filters after Data-Juicer's ops -----------------------------------

def _base_id(record_id: str) -> str:
    """The pool id of a processed record (a mapper that splits a record numbers the parts ``#sN``)."""
    head, sep, tail = record_id.rpartition("#s")
    return head if sep and tail.isdigit() else record_id


def apply_model_filters(records: list[dict], filters: list[dict],
                        stats: dict[str, dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Run the recipe's ``model_stat_filter`` entries, in order, over the records Data-Juicer
    kept: a record whose stat is below ``min_value`` or above ``max_value`` is dropped; one with
    no value for the stat (no target, not rolled out) is kept. ``stats`` is ``{id: stats}`` of
    the model probe. Returns (kept, per-filter counts ``{"op": "model_stat_filter:<stat>", "in",
    "kept"}``, dropped records)."""
    kept, counts, dropped = list(records), [], []
    for f in filters:
        low, high, stat = f.get("min_value"), f.get("max_value"), f["stat"]
        passed = []
        for record in kept:
            value = stats.get(record["id"], stats.get(_base_id(record["id"]), {})).get(stat)
            out = value is not None and ((low is not None and value < low) or (high is not None and value > high))
            (dropped if out else passed).append(record)
        counts.append({"op": f"model_stat_filter:{stat}", "in": len(kept), "kept": len(passed)})
        log.info("model_stat_filter %s in [%s, %s]: %d -> %d", stat, low, high, len(kept), len(passed))
        kept = passed
    return kept, counts, dropped


CLEAN = ("clean", "unlabelled")


def noise_label(record: dict) -> str:
    """A record's noise label (``meta.noise``; ``unlabelled`` when it has none)."""
    return (record.get("meta") or {}).get("noise") or "unlabelled"


def feedback_report(reached: list[dict], dropped: list[dict]) -> dict:
    """What the model filters removed, against the noise labels: the dropped count, the labels of
    the dropped records, and per label (and ``any_noise``: neither clean nor unlabelled) the
    precision (dropped with the label / dropped; null when nothing was dropped) and recall
    (dropped with the label / records with it that reached the filters)."""
    def count(records, label):
        return sum((noise_label(r) not in CLEAN) if label == "any_noise" else noise_label(r) == label
                   for r in records)

    labels = sorted({noise_label(r) for r in reached}) + ["any_noise"]
    per_label = {}
    for label in labels:
        hit, total = count(dropped, label), count(reached, label)
        per_label[label] = {"reached": total, "dropped": hit,
                            "precision": hit / len(dropped) if dropped else None,
                            "recall": hit / total if total else None}
    return {"reached": len(reached), "dropped": len(dropped),
            "dropped_noise": {label: n for label in labels[:-1] if (n := count(dropped, label))},
            "labels": per_label}


def process_with_feedback(records: list[dict], recipe_path: str, scratch: str, executor: dict,
                          stats: dict[str, dict] | None,
                          before_ops: bool = False) -> tuple[list[dict], list[dict], dict | None]:
    """Process ``records`` with a recipe: its Data-Juicer ops on the ``executor`` and its
    ``model_stat_filter`` entries on the model probe's ``stats`` (``{id: stats}``), after the
    Data-Juicer ops or, with ``before_ops``, before them (so a deduplicator keeps the twin the model
    filters leave). Returns (kept, per-op counts in the order run, the :func:`feedback_report` or
    None without model filters)."""
    _, filters = split_recipe(read_yaml(recipe_path))
    if filters and stats is None:
        raise ValueError(f"{recipe_path} has model_stat_filter entries but the experiment's feedback is off, so "
                         "there are no model stats: set feedback.enabled: true")
    if not filters:
        kept, counts = dj.process(records, recipe_path, scratch, executor)
        return kept, counts, None
    if before_ops:
        passed, model_counts, removed = apply_model_filters(records, filters, stats)
        kept, counts = dj.process(passed, recipe_path, scratch, executor)
        return kept, model_counts + counts, feedback_report(records, removed)
    reached, counts = dj.process(records, recipe_path, scratch, executor)
    kept, model_counts, removed = apply_model_filters(reached, filters, stats)
    return kept, counts + model_counts, feedback_report(reached, removed)
