"""Rule plot_training: the training curves of an experiment (SFT if on, then LoRA DPO) in one figure."""

from juicebox.io import setup_logging
from juicebox.plots import plot_metrics

setup_logging(snakemake.log[0])
curves = [("SFT", path) for path in snakemake.input.sft] + [("DPO", snakemake.input.dpo)]
plot_metrics(curves, snakemake.output[0])
