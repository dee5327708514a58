"""Rule ledger: assemble the stages' counts in pipeline order and check that they add up; the
training section says how many rows each training used, cut or skipped; later DPO rounds get a
section each (their rollouts start from the processed records again)."""

from juicebox.io import read_json, setup_logging, write_json
from juicebox.ledger import assemble, training_entry

log = setup_logging(snakemake.log[0])
stages = [(name, read_json(path)) for name, path in zip(snakemake.params.stages, snakemake.input.stages)]
training = {name: training_entry(read_json(path))
            for name, path in zip(snakemake.params.trainings, snakemake.input.training)}
per_round = 1 + len(snakemake.params.round_stages)
rounds = {}
for i, r in enumerate(snakemake.params.rounds):
    paths = snakemake.input.rounds[i * per_round:(i + 1) * per_round]
    rounds[r] = ([(name, read_json(path)) for name, path in zip(snakemake.params.round_stages, paths)],
                 {"dpo": training_entry(read_json(paths[-1]))})
ledger = assemble(stages, training, rounds)
write_json(snakemake.output[0], ledger)
rounds_entries = [(f"round {r} {name}", entry) for r, section in ledger.get("rounds", {}).items()
                  for name, entry in [*section["stages"].items(), *section["training"].items()]]
for name, entry in [*ledger["stages"].items(), *ledger["training"].items(), *rounds_entries]:
    log.info("%s: in %d kept %d dropped %d rejected %d", name, entry["in"], entry["kept"],
             sum(entry["dropped"].values()), entry["rejected"])
