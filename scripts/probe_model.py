"""Rule probe_model: per pool record, what the feedback model makes of it (loss of its SFT target,
and the reward stats of its rollouts in another experiment); per-record stats and a summary."""

from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.ksigma import stat_columns, summarize_columns
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
summary = summarize_columns(stat_columns(stats))
write_jsonl(snakemake.output.stats, stats)
write_json(snakemake.output.summary, summary)
for stat, s in summary.items():
    log.info("%s: mean %.4g std %.4g min %.4g max %.4g (n=%d)", stat, s["mean"], s["std"], s["min"], s["max"],
             s["count"])
