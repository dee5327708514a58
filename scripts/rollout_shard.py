"""Rule rollout_shard: n answers per prompt for one shard of an experiment's rollout prompts.

Resumable: finished prompts are in `<output>.partial`; a rerun after a kill answers the rest.
"""

from juicebox.engines import Sampling
from juicebox.io import read_jsonl, setup_logging
from juicebox.rollouts import run_shard, select_prompts
from juicebox.shards import parse_shard, select

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
index, count = parse_shard(snakemake.wildcards.shard)
prompts, _ = select_prompts(read_jsonl(snakemake.input.data), settings["tasks"], settings["limit"],
                            snakemake.params.seed)
records = select(prompts, index, count)
sampling = Sampling.from_config(settings["sampling"], seed=snakemake.params.seed)
n = run_shard(records, snakemake.output[0], settings["engine"], snakemake.input.model, None, sampling,
              settings["system_prompt"], settings["max_prompt_tokens"], threads=snakemake.threads,
              log_dir=snakemake.params.server_logs)
log.info("shard %s: %d prompt(s) answered", snakemake.wildcards.shard, n)
