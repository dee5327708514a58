"""Rollouts: n answers per prompt of the processed pool, by any engine, sharded and resumable.

Which prompts: the processed records of the tasks listed in ``rollouts.tasks`` (default all),
then at most ``rollouts.limit`` of them, a seeded sample kept in pool order. Every processed
record is accounted for in the ledger's rollout stage, counted in prompts:
``in`` = processed records, ``kept`` = prompts with at least one answer, ``dropped`` by reason
(``task_not_selected``, ``over_limit``, ``prompt_too_long``, ``no_answer``).

A prompt longer than ``max_prompt_tokens`` (after the chat template; a vision-language model's
image tokens count) is not sent to the engine; it is written with no samples and ``dropped:
prompt_too_long``, as vLLM refuses prompts beyond its context. Junk such as an overlong scraped
page would otherwise dominate the batch's memory.
"""

from __future__ import annotations

import logging
import random

from .engines import Prompt, Sampling, make_engine
from .engines.hf import PromptEncoder
from .ledger import stage
from .records import prompt_messages, record_images
from .shards import ShardFile, gather

log = logging.getLogger("juicebox")
# What a rollout record keeps of its processed record: rewards read the gold (answer, references),
# the images, and the source's other fields under meta (object_grounding's annotated objects).
CARRIED = ("id", "task", "prompt", "answer", "references", "images", "meta")


def select_prompts(records: list[dict], tasks: list[str] | None, limit: int | None,
                   seed: int) -> tuple[list[dict], dict[str, int]]:
    """The records to roll out, in pool order, and how many were left out, by reason."""
    chosen = [r for r in records if not tasks or r.get("task") in tasks]
    dropped = {"task_not_selected": len(records) - len(chosen)}
    if limit is not None and len(chosen) > limit:
        keep = set(random.Random(seed).sample(range(len(chosen)), limit))
        dropped["over_limit"] = len(chosen) - limit
        chosen = [r for i, r in enumerate(chosen) if i in keep]
    return chosen, {k: v for k, v in dropped.items() if v}


def too_long(records: list[dict], model: str, system_prompt: str | None, limit: int | None) -> set[str]:
    """Ids of the records whose rendered prompt has more than ``limit`` tokens, counted as the ``hf``
    engine counts them: a vision-language model's image tokens included (its processor's count)."""
    if limit is None or not records:
        return set()
    encoder = PromptEncoder.load(model)
    return {r["id"] for r in records if encoder.length(as_prompt(r, system_prompt)) > limit}


def as_prompt(record: dict, system_prompt: str | None) -> Prompt:
    """The engines' prompt of a record: its id, chat messages (with the system prompt) and images."""
    return Prompt(record["id"], prompt_messages(record["prompt"], system_prompt), record_images(record))


def run_shard(records: list[dict], output: str, engine_cfg: dict, model: str, adapter: str | None,
              sampling: Sampling, system_prompt: str | None = None, max_prompt_tokens: int | None = None,
              threads: int | None = None, log_dir: str = "results/logs/servers") -> int:
    """Answer the shard's records n times each, resuming from ``output``'s partial file."""
    header = {"ids": [r["id"] for r in records], "engine": engine_cfg, "model": model, "adapter": adapter,
              "sampling": sampling.to_dict(), "system_prompt": system_prompt, "max_prompt_tokens": max_prompt_tokens}
    shard = ShardFile(output, header)
    done = shard.done
    # Over the whole shard, not what is left: the prompts handed to the engine (and so its
    # batches) are the same in every run, resumed or not.
    skipped = too_long(records, model, system_prompt, max_prompt_tokens)
    for record in records:
        if record["id"] in skipped and record["id"] not in done:
            shard.append({**{k: record.get(k) for k in CARRIED}, "samples": [], "dropped": "prompt_too_long"})
    answerable = [r for r in records if r["id"] not in skipped]
    todo = [r for r in answerable if r["id"] not in done]
    log.info("%d prompt(s) in shard, %d already done, %d to answer", len(records), len(records) - len(todo), len(todo))
    if todo:
        by_id = {r["id"]: r for r in answerable}
        engine = make_engine(engine_cfg, model, adapter, sampling, threads=threads, log_dir=log_dir)
        provenance = engine.provenance()

        def on_done(prompt: Prompt, samples: list[dict]) -> None:
            record = by_id[prompt.id]
            shard.append({**{k: record.get(k) for k in CARRIED}, "samples": samples, "engine": provenance,
                          "model": model, "adapter": adapter, "sampling": sampling.to_dict(),
                          "seed": sampling.seed})

        try:
            # The whole shard and what is done: the engine batches by position in the shard and
            # answers (and passes to on_done) only the prompts not done.
            engine.run([as_prompt(r, system_prompt) for r in answerable], on_done, done=done)
        finally:
            engine.close()
    return shard.finish(r["id"] for r in records)


def gather_rollouts(shard_paths: list[str], selected: list[dict], n_processed: int,
                    dropped: dict[str, int]) -> tuple[list[dict], dict]:
    """The rollouts in pool order and the ledger stage (counted in prompts)."""
    records = gather(shard_paths, [r["id"] for r in selected])
    answered = [r for r in records if r["samples"]]
    dropped = dict(dropped)
    for record in records:
        if not record["samples"]:
            reason = record.get("dropped", "no_answer")
            dropped[reason] = dropped.get(reason, 0) + 1
    missing = len(selected) - len(records)
    if missing:
        dropped["no_answer"] = dropped.get("no_answer", 0) + missing
    return answered, stage(n_processed, len(answered), dropped)
