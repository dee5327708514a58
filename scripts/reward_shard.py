"""Rule reward_shard: score one shard of the rollouts with the configured rewards (resumable).

Prompts are scored in chunks of `chunk` and each scored prompt is appended to the shard's
partial file, so a killed job resumes where it stopped. Chunks are fixed by position in the
shard, not formed from what is left: a chunk partly written when the job was killed is scored
again whole (CIDEr's IDF is computed over the chunk) and only its prompts not yet written are
appended, so the shard's bytes are those of an uninterrupted run.
"""

import shutil
from pathlib import Path

from juicebox.io import read_jsonl, setup_logging
from juicebox.rewards import CombinedReward, RewardContext
from juicebox.shards import ShardFile, parse_shard, pending_batches, select

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
index, count = parse_shard(snakemake.wildcards.shard)
records = select(read_jsonl(snakemake.input.rollouts), index, count)
# A reward that asks models (divide_conquer) keeps their replies in the cache folder beside the
# shard's partial file, so that a resumed shard asks nothing again; removed once the shard is done.
cache_dir = Path(snakemake.output[0] + ".cache")
context = RewardContext(policy_model=snakemake.input.policy, base_model=snakemake.input.base,
                        threads=snakemake.threads, seed=snakemake.params.seed,
                        log_dir=str(Path(snakemake.log[0]).parent), cache_dir=str(cache_dir))
# The chunk size decides the scores (CIDEr's IDF), so a partial file from another chunk size is set aside.
shard = ShardFile(snakemake.output[0], {"ids": [r["id"] for r in records], "rewards": settings["functions"],
                                        "chunk": settings["chunk"], "policy": snakemake.input.policy,
                                        "base": snakemake.input.base})
done = shard.done
chunks = list(pending_batches(records, settings["chunk"], done))
log.info("%d prompt(s) in shard, %d to score, in %d chunk(s)", len(records), len(records) - len(done), len(chunks))
if chunks:
    reward = CombinedReward(settings["functions"], context)
    for chunk in chunks:
        for record in reward.score_records(chunk):
            if record["id"] not in done:
                shard.append(record)
shard.finish(r["id"] for r in records)
shutil.rmtree(cache_dir, ignore_errors=True)
