"""Rule probe_model: per pool record, what the feedback model makes of it (loss of its SFT target,
and the reward stats of its rollouts in another experiment); per-record stats and a summary."""

from juicebox.io import read_jsonl, setup_logging
from juicebox.ksigma import write_probe
from juicebox.model_probe import probe

log = setup_logging(snakemake.log[0])
feedback = snakemake.params.feedback
records = read_jsonl(snakemake.input.pool)
scored = read_jsonl(snakemake.input.scored) if snakemake.input.get("scored") else None
log.info("probing %d records with %s (%s model of experiment %s)%s", len(records), snakemake.input.model,
         feedback["model"], snakemake.params.source, ", rewards from " + snakemake.input.scored if scored else "")
if snakemake.threads:
    import torch

    torch.set_num_threads(snakemake.threads)
stats = probe(records, snakemake.input.model, feedback["batch_size"], feedback["max_length"], scored,
              feedback["pass_threshold"])
write_probe(stats, snakemake.output.stats, snakemake.output.summary, log)
