rule build_pool:
    input:
        pool_inputs,
    output:
        pool="results/{exp}/pool/pool.jsonl",
        rejected="results/{exp}/pool/rejected.jsonl",
        stage="results/{exp}/pool/ledger_stage.json",
        images=directory("results/{exp}/pool/images"),
    log:
        "results/{exp}/logs/build_pool.log",
    benchmark:
        "results/{exp}/benchmarks/build_pool.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        sources=lambda w: experiment(w)["sources"],
        max_rejected_fraction=lambda w: experiment(w)["max_rejected_fraction"],
        mix=lambda w: experiment(w)["pool"].get("mix"),
        steps=lambda w: experiment(w)["pool"]["steps"],
        seed=CONFIG["seed"],
    script:
        "../scripts/build_pool.py"
