"""Rule process_data: run Data-Juicer's executor with the (refined) recipe; count kept/dropped per op.

The recipe's ``model_stat_filter`` entries (model feedback) run on the model probe's stats, after
Data-Juicer's ops (``feedback.before_ops``: before them); each counts in the ledger as
``model_stat_filter:<stat>``, and ``summary.json``'s ``feedback`` section compares what they
dropped with the noise labels.
"""

from collections import Counter

from juicebox import dj
from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.model_probe import process_with_feedback
from juicebox.real_kinds import prompt_rows

log = setup_logging(snakemake.log[0])
records = read_jsonl(snakemake.input.pool)
log.info("processing %d records with %s on Data-Juicer's %s executor", len(records), snakemake.input.recipe,
         snakemake.params.dj["executor"])
stats = ({row["id"]: row["stats"] for row in read_jsonl(snakemake.input.model_stats)}
         if snakemake.input.get("model_stats") else None)
kept, counts, feedback = process_with_feedback(records, snakemake.input.recipe, snakemake.params.scratch,
                                               snakemake.params.dj, stats, snakemake.params.before_ops)
write_jsonl(snakemake.output.data, kept)
write_jsonl(snakemake.output.prompts, prompt_rows(kept))  # ReaL's prompt kind
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
