rule process_data:
    input:
        pool="results/{exp}/pool/pool.jsonl",
        recipe="results/{exp}/recipe/refined.yaml",
        model_stats=feedback_model_stats,
    output:
        data="results/{exp}/processed/data.jsonl",
        stage="results/{exp}/processed/ledger_stage.json",
        summary="results/{exp}/processed/summary.json",
    log:
        "results/{exp}/logs/process_data.log",
    benchmark:
        "results/{exp}/benchmarks/process_data.tsv"
    conda:
        "../envs/datajuicer.yaml"
    threads: lambda w: experiment(w)["dj"]["np"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        scratch="results/{exp}/processed",
        dj=lambda w: experiment(w)["dj"],
        before_ops=lambda w: experiment(w)["feedback"]["before_ops"],
    script:
        "../scripts/process_data.py"
