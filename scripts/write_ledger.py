"""Rule ledger: assemble the stages' counts in pipeline order and check that they add up; the
training section says how many rows each training used, cut or skipped."""

from juicebox.io import read_json, setup_logging, write_json
from juicebox.ledger import assemble, training_entry

log = setup_logging(snakemake.log[0])
stages = [(name, read_json(path)) for name, path in zip(snakemake.params.stages, snakemake.input.stages)]
training = {name: training_entry(read_json(path))
            for name, path in zip(snakemake.params.trainings, snakemake.input.training)}
ledger = assemble(stages, training)
write_json(snakemake.output[0], ledger)
for name, entry in [*ledger["stages"].items(), *ledger["training"].items()]:
    log.info("%s: in %d kept %d dropped %d rejected %d", name, entry["in"], entry["kept"],
             sum(entry["dropped"].values()), entry["rejected"])
