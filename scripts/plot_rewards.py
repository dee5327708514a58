"""Rule plot_rewards: the distribution of every reward over the scored samples, per task."""

from juicebox.figures import plot_rewards, reward_values
from juicebox.io import read_jsonl, setup_logging

setup_logging(snakemake.log[0])
values = reward_values(read_jsonl(snakemake.input[0]))
plot_rewards(values, f"{snakemake.wildcards.exp}: rewards per sample", snakemake.output[0])
