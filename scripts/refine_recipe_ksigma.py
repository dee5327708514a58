"""Rule refine_recipe_ksigma: refined.yaml and changes.json from the probe's stats (or the recipe as is).

With model feedback on, the experiment's ``feedback.filters`` are appended to the recipe as
``model_stat_filter`` entries, and their bounds (and those of any such entry written in the
recipe) are refined from the model probe's stats when ``feedback.refine`` is on, by the same
k-sigma code as Data-Juicer's filters (``ksigma.k``, ``mode``, ``per_op.model_stat_filter``),
also when ``ksigma.enabled`` is false (then only they are refined).
"""

from juicebox import dj
from juicebox.io import read_jsonl, read_yaml, setup_logging, write_json, write_yaml
from juicebox.ksigma import MODEL_STAT_FILTER, KSigmaSettings, refine_recipe, stat_columns, with_feedback_filters

log = setup_logging(snakemake.log[0])
cfg, feedback = snakemake.params.ksigma, snakemake.params.feedback
recipe = with_feedback_filters(read_yaml(snakemake.input.recipe), feedback)
refine_dj = cfg["enabled"]
refine_model = feedback["enabled"] and feedback["refine"]
if refine_dj or refine_model:
    settings = KSigmaSettings.from_config(cfg)
    columns = stat_columns(read_jsonl(snakemake.input.stats)) if refine_dj else {}
    if refine_model:
        columns.update(stat_columns(read_jsonl(snakemake.input.model_stats)))

    def select(op):
        return refine_model if op == MODEL_STAT_FILTER else refine_dj

    refined, changes = refine_recipe(recipe, columns, settings, dj.op_signature, select)
    for c in changes:
        log.info("%s.%s (%s, k=%g, %s): %s -> %s, drops %.1f%% (before %.1f%%)", c["op"], c["arg"], c["stat"],
                 c["k"], c["mode"], c["before"], c["after"], 100 * c["drop_fraction"],
                 100 * c["drop_fraction_before"])
    if not refine_dj:
        log.info("k-sigma refinement is off for this experiment: Data-Juicer's bounds are used as written")
else:
    refined, changes = recipe, []
    log.info("k-sigma refinement is off for this experiment: the recipe is used as written")
write_yaml(snakemake.output.recipe, refined)
write_json(snakemake.output.changes, changes)
