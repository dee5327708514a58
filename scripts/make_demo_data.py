"""Rule make_demo_data: write the embedded default sources and benchmark splits from the seed."""

from juicebox.demo_data import generate
from juicebox.io import setup_logging

log = setup_logging(snakemake.log[0])
settings = dict(snakemake.params.settings)
outdir = settings.pop("outdir")
manifest = generate(outdir, snakemake.params.seed, **settings)
log.info("demo data written to %s: %s", outdir, manifest["counts"])
log.info("benchmark/pool disjointness (shared underlying keys): %s", manifest["disjoint"])
