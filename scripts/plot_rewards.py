"""Rule plot_rewards: the distribution of every reward over the scored samples, per task."""

from juicebox.io import read_jsonl, setup_logging
from juicebox.plots import plot_rewards, reward_values

setup_logging(snakemake.log[0])
values = reward_values(read_jsonl(snakemake.input[0]))
plot_rewards(values, f"{snakemake.wildcards.exp}: rewards per sample", snakemake.output[0])
