rule make_pairs:
    input:
        pairs_input,
    output:
        **outputs(
            "pairs",
            "parquet",
            "jsonl",
            "llamafactory",
            "rw_pair",
            "dataset_info",
            "stage",
            "summary",
        ),
    log:
        layout.log("pairs", "make_pairs"),
    benchmark:
        layout.benchmark("pairs", "make_pairs")
    priority: 1
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        pairing=lambda w: experiment(w)["pairing"],
        system_prompt=lambda w: experiment(w)["rollouts"]["system_prompt"],
        seed=model_seed,
    script:
        "../scripts/make_pairs.py"
