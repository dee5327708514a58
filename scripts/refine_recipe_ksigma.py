"""Rule refine_recipe_ksigma: refined.yaml and changes.json from the probe's stats (or the recipe as is)."""

from juicebox import dj
from juicebox.io import read_jsonl, read_yaml, setup_logging, write_json, write_yaml
from juicebox.ksigma import KSigmaSettings, refine_recipe, stat_columns

log = setup_logging(snakemake.log[0])
recipe = read_yaml(snakemake.input.recipe)
cfg = snakemake.params.ksigma
if cfg["enabled"]:
    settings = KSigmaSettings.from_config(cfg)
    columns = stat_columns(read_jsonl(snakemake.input.stats))
    refined, changes = refine_recipe(recipe, columns, settings, dj.op_signature)
    for c in changes:
        log.info("%s.%s (%s, k=%g, %s): %s -> %s, drops %.1f%% (before %.1f%%)", c["op"], c["arg"], c["stat"],
                 c["k"], c["mode"], c["before"], c["after"], 100 * c["drop_fraction"],
                 100 * c["drop_fraction_before"])
else:
    refined, changes = recipe, []
    log.info("k-sigma refinement is off for this experiment: the recipe is used as written")
write_yaml(snakemake.output.recipe, refined)
write_json(snakemake.output.changes, changes)
