"""Rule ledger: assemble the stages' counts in pipeline order and check that they add up."""

from juicebox.io import read_json, setup_logging, write_json
from juicebox.ledger import assemble

log = setup_logging(snakemake.log[0])
stages = [(name, read_json(path)) for name, path in zip(snakemake.params.stages, snakemake.input)]
ledger = assemble(stages)
write_json(snakemake.output[0], ledger)
for name, entry in ledger["stages"].items():
    log.info("%s: in %d kept %d dropped %d rejected %d", name, entry["in"], entry["kept"],
             sum(entry["dropped"].values()), entry["rejected"])
