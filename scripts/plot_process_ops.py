"""Rule plot_process_ops: records each Data-Juicer op of the refined recipe kept and dropped."""

from juicebox.figures import plot_op_counts
from juicebox.io import read_json, setup_logging

setup_logging(snakemake.log[0])
ops = read_json(snakemake.input[0])["ops"]
plot_op_counts(ops, f"{snakemake.wildcards.exp}: records per Data-Juicer op", snakemake.output[0])
