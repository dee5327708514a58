"""Rule plot_margins: the reward margin (chosen - rejected) of the DPO pairs, per task."""

from juicebox.io import read_jsonl, setup_logging
from juicebox.plots import plot_margins

setup_logging(snakemake.log[0])
plot_margins(read_jsonl(snakemake.input[0]), f"{snakemake.wildcards.exp}: pair margins", snakemake.output[0])
