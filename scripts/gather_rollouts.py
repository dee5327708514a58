"""Rule gather_rollouts: the shards back in pool order, checked; the ledger's rollout stage."""

from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.rollouts import gather_rollouts, select_prompts

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
processed = read_jsonl(snakemake.input.data)
selected, dropped = select_prompts(processed, settings["tasks"], settings["limit"], snakemake.params.seed)
records, stage = gather_rollouts(list(snakemake.input.shards), selected, len(processed), dropped)
write_jsonl(snakemake.output.rollouts, records)
write_json(snakemake.output.stage, stage)
log.info("rollouts: %d prompts with answers of %d processed records", len(records), len(processed))
