rule make_demo_data:
    output:
        **DEMO_FILES,
        images=directory(f"{DEMO}/images"),
    log:
        "results/logs/make_demo_data.log",
    benchmark:
        "results/benchmarks/make_demo_data.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=CONFIG["demo_data"],
        seed=CONFIG["seed"],
    script:
        "../scripts/make_demo_data.py"
