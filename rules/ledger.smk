rule ledger:
    input:
        stages=ledger_stage_files,
        training=lambda w: list(training_summaries(w).values()),
        rounds=round_ledger_inputs,
    output:
        layout.path("ledger", "ledger"),
    log:
        layout.log("ledger", "ledger"),
    benchmark:
        layout.benchmark("ledger", "ledger")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        stages=ledger_stage_names,
        trainings=lambda w: list(training_summaries(w)),
        rounds=lambda w: later_rounds(w.exp),
        round_stages=ROUND_STAGES,
    script:
        "../scripts/write_ledger.py"
