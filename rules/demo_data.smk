rule make_demo_data:
    output:
        math=f"{DEMO}/math.jsonl",
        math_extra=f"{DEMO}/math_extra.csv",
        captions=f"{DEMO}/captions.json",
        captions_extra=f"{DEMO}/captions_extra.parquet",
        bench_math=f"{DEMO}/bench/math_test.jsonl",
        bench_caption=f"{DEMO}/bench/caption_test.json",
        images=directory(f"{DEMO}/images"),
        manifest=f"{DEMO}/manifest.json",
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
