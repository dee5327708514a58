rule make_pairs:
    input:
        "results/{exp}/rewards/scored.jsonl",
    output:
        parquet="results/{exp}/pairs/pairs.parquet",
        jsonl="results/{exp}/pairs/pairs.jsonl",
        llamafactory="results/{exp}/pairs/pairs_llamafactory.jsonl",
        dataset_info="results/{exp}/pairs/dataset_info.json",
        stage="results/{exp}/pairs/ledger_stage.json",
        summary="results/{exp}/pairs/summary.json",
    log:
        "results/{exp}/logs/make_pairs.log",
    benchmark:
        "results/{exp}/benchmarks/make_pairs.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        pairing=lambda w: experiment(w)["pairing"],
        system_prompt=lambda w: experiment(w)["rollouts"]["system_prompt"],
        seed=CONFIG["seed"],
    script:
        "../scripts/make_pairs.py"
