LEDGER_STAGES = {
    "pool": "results/{exp}/pool/ledger_stage.json",
    "process": "results/{exp}/processed/ledger_stage.json",
    "rollouts": "results/{exp}/rollouts/ledger_stage.json",
    "rewards": "results/{exp}/rewards/ledger_stage.json",
    "pairs": "results/{exp}/pairs/ledger_stage.json",
}


rule ledger:
    input:
        stages=list(LEDGER_STAGES.values()),
        training=lambda w: list(training_summaries(w).values()),
        rounds=round_ledger_inputs,
    output:
        "results/{exp}/ledger.json",
    log:
        "results/{exp}/logs/ledger.log",
    benchmark:
        "results/{exp}/benchmarks/ledger.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        stages=list(LEDGER_STAGES),
        trainings=lambda w: list(training_summaries(w)),
        rounds=lambda w: later_rounds(w.exp),
        round_stages=ROUND_STAGES,
    script:
        "../scripts/write_ledger.py"
