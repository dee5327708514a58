rule build_pool:
    input:
        pool_inputs,
    output:
        **outputs("pool", "pool", "rejected", "stage", "images"),
    log:
        layout.log("pool", "build_pool"),
    benchmark:
        layout.benchmark("pool", "build_pool")
    priority: 1
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
