"""Rule eval_summary: results/eval.json, every experiment side by side with deltas, ranking, provenance."""

from pathlib import Path

from juicebox.io import setup_logging, write_json
from juicebox.summary import build, check_schema

log = setup_logging(snakemake.log[0])
results = {exp: {bench: variants for bench in snakemake.params.benchmarks[exp]}
           for exp, variants in snakemake.params.experiments.items()}
summary = build(results, snakemake.params.ranking, snakemake.params.config, snakemake.params.seed,
                repo=Path(snakemake.scriptdir).parent, rounds=snakemake.params.rounds,
                sweeps=snakemake.params.sweeps, pools=snakemake.params.pools, groups=snakemake.params.groups)
check_schema(summary, snakemake.params.schema)
write_json(snakemake.output[0], summary)
for row in summary["ranking"]:
    log.info("%-12s %-5s %s %s = %.4f [%.4f, %.4f] over %d replicate(s)", row["experiment"], row["variant"],
             row["benchmark"], row["metric"], row["value"], *row["ci95"], row["replicates"])
for row in summary["pool_ranking"]:
    log.info("pool %s (%s): best %s = %.4f, vs best pool %s%s", row["pool"], ", ".join(row["experiments"]),
             row["experiment"], row["value"], row["delta_vs_best"], " (significant)" if row["significant"] else "")
