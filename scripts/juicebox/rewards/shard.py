"""One reward shard, scored resumably (rule ``reward_shard``; scripts/reward_shard.py calls it).

Prompts are scored in chunks of ``chunk`` and each scored prompt is appended to the shard's
partial file, so a killed job resumes where it stopped. Chunks are fixed by position in the
shard, not formed from what is left: a chunk partly written when the job was killed is scored
again whole (CIDEr's IDF is computed over the chunk) and only its prompts not yet written are
appended, so the shard's bytes are those of an uninterrupted run. A reward that asks models
(``divide_conquer``) keeps their replies in ``<output>.cache/`` meanwhile, so a resumed shard asks
nothing again; the folder goes once the shard is written.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from ..shards import ShardFile, pending_batches
from .base import CombinedReward, RewardContext

log = logging.getLogger("juicebox")


def score_shard(records: list[dict], output: str, settings: dict, context: RewardContext, header: dict) -> int:
    """Score ``records`` (one shard) with ``settings["functions"]`` in chunks of ``settings["chunk"]``
    into ``output``; ``header``: what else decides the scores (a partial file written under another
    header is set aside). Returns the records written."""
    cache_dir = Path(output + ".cache")
    context = dataclasses.replace(context, cache_dir=str(cache_dir))
    # The chunk size decides the scores (CIDEr's IDF), so a partial file from another chunk size is set aside.
    shard = ShardFile(output, {"ids": [r["id"] for r in records], "rewards": settings["functions"],
                               "chunk": settings["chunk"], **header})
    done = shard.done
    chunks = list(pending_batches(records, settings["chunk"], done))
    log.info("%d prompt(s) in shard, %d to score, in %d chunk(s)", len(records), len(records) - len(done),
             len(chunks))
    if chunks:
        reward = CombinedReward(settings["functions"], context)
        try:
            for chunk in chunks:
                for record in reward.score_records(chunk):
                    if record["id"] not in done:
                        shard.append(record)
        finally:
            reward.close()
    written = shard.finish(r["id"] for r in records)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return written
