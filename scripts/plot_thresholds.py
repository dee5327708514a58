"""Rule plot_thresholds (and plot_model_thresholds): one histogram per probe stat with the current and
refined thresholds drawn. With ``params.feedback`` (the model probe's plots), the current thresholds
include the experiment's feedback filters as written."""

from juicebox import dj
from juicebox.io import read_jsonl, read_yaml, setup_logging
from juicebox.ksigma import KSigmaSettings, stat_columns, with_feedback_filters
from juicebox.plots import plot_histograms, thresholds

log = setup_logging(snakemake.log[0])
settings = KSigmaSettings.from_config(snakemake.params.ksigma)
columns = stat_columns(read_jsonl(snakemake.input.stats))
recipe = with_feedback_filters(read_yaml(snakemake.input.recipe), getattr(snakemake.params, "feedback", None))
current = thresholds(recipe, settings, dj.op_signature)
refined = thresholds(read_yaml(snakemake.input.refined), settings, dj.op_signature)
written = plot_histograms(columns, current, refined, snakemake.output[0])
log.info("wrote %d histograms to %s", len(written), snakemake.output[0])
