"""Rule reward_shard: score one shard of the rollouts with the configured rewards (resumable).

Prompts are scored in chunks of `chunk` and each scored prompt is appended to the shard's
partial file, so a killed job resumes after the last finished chunk.
"""

from juicebox.io import read_jsonl, setup_logging
from juicebox.rewards import CombinedReward, RewardContext
from juicebox.shards import ShardFile, parse_shard, select

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
index, count = parse_shard(snakemake.wildcards.shard)
records = select(read_jsonl(snakemake.input.rollouts), index, count)
context = RewardContext(policy_model=snakemake.input.policy, base_model=snakemake.input.base,
                        threads=snakemake.threads, seed=snakemake.params.seed)
shard = ShardFile(snakemake.output[0], {"ids": [r["id"] for r in records], "rewards": settings["functions"],
                                        "policy": snakemake.input.policy, "base": snakemake.input.base})
todo = [r for r in records if r["id"] not in shard.done]
log.info("%d prompt(s) in shard, %d to score", len(records), len(todo))
if todo:
    reward = CombinedReward(settings["functions"], context)
    for start in range(0, len(todo), settings["chunk"]):
        for record in reward.score_records(todo[start:start + settings["chunk"]]):
            shard.append(record)
shard.finish(r["id"] for r in records)
