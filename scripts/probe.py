"""Rule probe: run the Data-Juicer Analyzer over the pool; write per-record stats and a summary."""

from juicebox import dj
from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.ksigma import stat_columns, summarize_columns

log = setup_logging(snakemake.log[0])
records = read_jsonl(snakemake.input.pool)
log.info("probing %d records with %s", len(records), snakemake.input.recipe)
stats = dj.analyze(records, snakemake.input.recipe, snakemake.params.scratch, snakemake.threads)
summary = summarize_columns(stat_columns(stats))
write_jsonl(snakemake.output.stats, stats)
write_json(snakemake.output.summary, summary)
for stat, s in summary.items():
    log.info("%s: mean %.4g std %.4g min %.4g max %.4g (n=%d)", stat, s["mean"], s["std"], s["min"], s["max"],
             s["count"])
