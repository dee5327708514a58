rule make_demo_data:
    output:
        **DEMO_FILES,
        images=directory(f"{DEMO}/images"),
    log:
        layout.log("demo_data", "make_demo_data"),
    benchmark:
        layout.benchmark("demo_data", "make_demo_data")
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
