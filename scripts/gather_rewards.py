"""Rule gather_rewards: the scored shards back in rollout order; the ledger's reward stage; a summary."""

import statistics

from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.ledger import stage
from juicebox.shards import gather

log = setup_logging(snakemake.log[0])
rollouts = read_jsonl(snakemake.input.rollouts)
records = gather(list(snakemake.input.shards), [r["id"] for r in rollouts])
missing = len(rollouts) - len(records)
scored = [r for r in records if any(s.get("reward") is not None for s in r["samples"])]
write_jsonl(snakemake.output.scored, records)
dropped = {"not_scored": missing, "no_reward": len(records) - len(scored)}
write_json(snakemake.output.stage, stage(len(rollouts), len(scored), {k: v for k, v in dropped.items() if v}))

by_name: dict[str, list[float]] = {}
for record in records:
    for sample in record["samples"]:
        for name, value in {"reward": sample.get("reward"), **sample.get("rewards", {})}.items():
            if value is not None:
                by_name.setdefault(name, []).append(value)


def describe(values):
    return {"count": len(values), "mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": statistics.pstdev(values)}


write_json(snakemake.output.summary, {"prompts": len(records), "prompts_scored": len(scored),
                                      "rewards": {k: describe(v) for k, v in by_name.items()},
                                      "values": {k: v for k, v in by_name.items()}})
log.info("rewards: %d of %d prompts scored", len(scored), len(rollouts))
