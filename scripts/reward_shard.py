"""Rule reward_shard: score one shard of the rollouts with the configured rewards, resumably
(:mod:`juicebox.rewards.shard`)."""

from pathlib import Path

from juicebox.io import read_jsonl, setup_logging
from juicebox.rewards import RewardContext
from juicebox.rewards.shard import score_shard
from juicebox.shards import parse_shard, select

log = setup_logging(snakemake.log[0])
index, count = parse_shard(snakemake.wildcards.shard)
context = RewardContext(policy_model=snakemake.input.policy, base_model=snakemake.input.base,
                        threads=snakemake.threads, seed=snakemake.params.seed,
                        log_dir=str(Path(snakemake.log[0]).parent))
score_shard(select(read_jsonl(snakemake.input.rollouts), index, count), snakemake.output[0],
            snakemake.params.settings, context, {"policy": snakemake.input.policy, "base": snakemake.input.base})
