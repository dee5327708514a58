"""Rule track_eval: an experiment's benchmark metrics (every numeric metric of every variant, with
its 95 % interval) and its curve over DPO rounds (step = round), from results/eval.json to the
trackers of `tracking:`; done.json lists what was logged and where."""

from juicebox.io import setup_logging, write_json
from juicebox.tracking import log_eval

setup_logging(snakemake.log[0])
done = log_eval(snakemake.input[0], snakemake.wildcards.exp, snakemake.params.run)
write_json(snakemake.output[0], done)
