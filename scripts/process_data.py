"""Rule process_data: run Data-Juicer's executor with the (refined) recipe; count kept/dropped per op.

The recipe's ``model_stat_filter`` entries (model feedback) run after Data-Juicer's ops, on the
model probe's stats; each counts in the ledger as ``model_stat_filter:<stat>``, and
``summary.json``'s ``feedback`` section compares what they dropped with the noise labels.
"""

from collections import Counter

from juicebox import dj
from juicebox.io import read_jsonl, read_yaml, setup_logging, write_json, write_jsonl
from juicebox.ksigma import split_recipe
from juicebox.model_probe import apply_model_filters, feedback_report

log = setup_logging(snakemake.log[0])
records = read_jsonl(snakemake.input.pool)
log.info("processing %d records with %s on Data-Juicer's %s executor", len(records), snakemake.input.recipe,
         snakemake.params.dj["executor"])
_, filters = split_recipe(read_yaml(snakemake.input.recipe))
if filters and not snakemake.input.get("model_stats"):
    raise ValueError(f"{snakemake.input.recipe} has model_stat_filter entries but the experiment's feedback is "
                     "off, so there are no model stats: set feedback.enabled: true")
kept, counts = dj.process(records, snakemake.input.recipe, snakemake.params.scratch, snakemake.params.dj)
feedback = None
if filters:
    stats = {row["id"]: row["stats"] for row in read_jsonl(snakemake.input.model_stats)}
    reached = kept
    kept, model_counts, removed = apply_model_filters(kept, filters, stats)
    counts += model_counts
    feedback = feedback_report(reached, removed)
write_jsonl(snakemake.output.data, kept)
write_json(snakemake.output.stage, dj.process_stage(len(records), len(kept), counts))


def noise(rs):
    return dict(sorted(Counter(r.get("meta", {}).get("noise", "unlabelled") for r in rs).items()))


summary = {"ops": counts, "noise": {"pool": noise(records), "processed": noise(kept)}}
if feedback is not None:
    summary["feedback"] = feedback
    log.info("model filters dropped %d of %d records: %s", feedback["dropped"], feedback["reached"],
             feedback["dropped_noise"])
write_json(snakemake.output.summary, summary)
log.info("kept %d of %d records", len(kept), len(records))
