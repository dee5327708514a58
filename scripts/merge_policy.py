"""Rule merge_policy: the next DPO round's policy, the previous policy with its adapter merged in,
and ``juicebox_policy.json`` naming both (with the adapter weights' SHA-256), so every rollout
sampled from it can be traced to the round that trained it."""

from juicebox.io import setup_logging
from juicebox.models import merge_policy

log = setup_logging(snakemake.log[0])
provenance = merge_policy(snakemake.input.model, snakemake.input.adapter, snakemake.output.model,
                          int(snakemake.wildcards.round))
log.info("round %d policy: %s + %s (adapter sha256 %s)", provenance["round"], provenance["base"],
         provenance["adapter"], provenance["adapter_sha256"])
