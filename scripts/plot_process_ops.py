"""Rule plot_process_ops: records each Data-Juicer op of the refined recipe kept and dropped."""

from juicebox.io import read_json, setup_logging
from juicebox.plots import plot_op_counts

setup_logging(snakemake.log[0])
ops = read_json(snakemake.input[0])["ops"]
plot_op_counts(ops, f"{snakemake.wildcards.exp}: records per Data-Juicer op", snakemake.output[0])
