"""Rule process_data: run Data-Juicer's executor with the (refined) recipe; count kept/dropped per op."""

from collections import Counter

from juicebox import dj
from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.ledger import stage

log = setup_logging(snakemake.log[0])
records = read_jsonl(snakemake.input.pool)
log.info("processing %d records with %s on Data-Juicer's %s executor", len(records), snakemake.input.recipe,
         snakemake.params.dj["executor"])
kept, counts = dj.process(records, snakemake.input.recipe, snakemake.params.scratch, snakemake.params.dj)
dropped, added = {}, {}
for index, c in enumerate(counts):
    name = c["op"] if [x["op"] for x in counts].count(c["op"]) == 1 else f"{c['op']}#{index}"
    if c["kept"] > c["in"]:  # an op that splits records adds some
        added[name] = c["kept"] - c["in"]
    else:
        dropped[name] = c["in"] - c["kept"]
write_jsonl(snakemake.output.data, kept)
write_json(snakemake.output.stage, stage(len(records), len(kept), dropped, added=added))


def noise(rs):
    return dict(sorted(Counter(r.get("meta", {}).get("noise", "unlabelled") for r in rs).items()))


write_json(snakemake.output.summary, {"ops": counts, "noise": {"pool": noise(records), "processed": noise(kept)}})
log.info("kept %d of %d records", len(kept), len(records))
