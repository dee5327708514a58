"""Rule probe: run the Data-Juicer Analyzer over the pool; write per-record stats and a summary."""

from juicebox import dj
from juicebox.io import read_jsonl, setup_logging
from juicebox.ksigma import write_probe

log = setup_logging(snakemake.log[0])
records = read_jsonl(snakemake.input.pool)
log.info("probing %d records with %s", len(records), snakemake.input.recipe)
stats = dj.analyze(records, snakemake.input.recipe, snakemake.params.scratch, snakemake.threads)
write_probe(stats, snakemake.output.stats, snakemake.output.summary, log)
