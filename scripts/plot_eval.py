"""Rule plot_eval: one benchmark's metrics for every experiment and variant, with their 95 % CIs."""

from juicebox.io import read_json, setup_logging
from juicebox.plots import plot_benchmark

setup_logging(snakemake.log[0])
plot_benchmark(read_json(snakemake.input[0]), snakemake.wildcards.bench, snakemake.output[0])
