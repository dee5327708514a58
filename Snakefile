# Juicebox: the data-model co-development loop as one Snakemake workflow.
# This file is the table of contents; the stages live in rules/, their code in scripts/.
# The rules on the way to each experiment's trained models (data, SFT, rollouts, rewards, pairs,
# training) carry `priority: 1` (SFT, the longest, 2): with few cores, every experiment's long jobs
# start before the evaluations, which nothing waits on but the summary.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo_data.smk"
include: "rules/pool.smk"
include: "rules/probe.smk"
include: "rules/refine.smk"
include: "rules/process.smk"
include: "rules/models.smk"
include: "rules/rollouts.smk"
include: "rules/rewards.smk"
include: "rules/pairs.smk"
include: "rules/train.smk"
include: "rules/eval.smk"
include: "rules/rounds.smk"
include: "rules/tracking.smk"
include: "rules/ledger.smk"
include: "rules/report.smk"
include: "rules/sharing.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
