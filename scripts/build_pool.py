"""Rule build_pool: validate the experiment's sources, quarantine bad records, apply pool steps.

Images given inline in the sources are written to the pool's image store (output ``images``)."""

from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.pool import build_pool, validate_sources
from juicebox.sources import SourceSpec

log = setup_logging(snakemake.log[0])
params = snakemake.params
specs = [SourceSpec.from_config(entry) for entry in params.sources]
validated = validate_sources(specs, params.max_rejected_fraction, snakemake.output.images)
extra_pools = {path: read_jsonl(path) for step in params.steps if step["op"] == "merge" for path in step["paths"]}
records, stage = build_pool(validated, params.mix, params.steps, params.seed, extra_pools)
write_jsonl(snakemake.output.rejected, validated.rejected)
write_jsonl(snakemake.output.pool, records)
write_json(snakemake.output.stage, stage)
log.info("pool: %d records from %d read, %d rejected (see %s)", len(records), validated.read,
         len(validated.rejected), snakemake.output.rejected)
