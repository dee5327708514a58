rule evaluate:
    input:
        unpack(variant_inputs),
    output:
        predictions="results/{exp}/eval/{bench}/{variant}.jsonl",
        metrics="results/{exp}/eval/{bench}/{variant}.json",
    log:
        "results/{exp}/logs/eval/{bench}-{variant}.log",
    benchmark:
        "results/{exp}/benchmarks/eval/{bench}-{variant}.tsv"
    conda:
        engine_env("eval", "envs/eval.yaml")
    threads: lambda w: experiment(w)["eval"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: cluster.engine_gpus(experiment(w)["eval"]),
    params:
        bench=lambda w: experiment(w)["eval"]["benchmarks"][w.bench],
        settings=lambda w: experiment(w)["eval"],
        seed=CONFIG["seed"],
        server_logs="results/{exp}/logs/eval/servers-{bench}-{variant}",
    script:
        "../scripts/evaluate.py"


rule eval_summary:
    input:
        eval_outputs(),
    output:
        "results/eval.json",
    log:
        "results/logs/eval_summary.log",
    benchmark:
        "results/benchmarks/eval_summary.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        experiments={exp: variants(exp) for exp in EXPERIMENTS},
        benchmarks={exp: benchmarks(exp) for exp in EXPERIMENTS},
        rounds={exp: later_rounds(exp) for exp in EXPERIMENTS},
        ranking=CONFIG["ranking"],
        sweeps=CONFIG["sweep_points"],
        # a data pool is named by the experiment that computes it (rules/sharing.smk)
        pools=lambda w: OWNERS["data"],
        config=CONFIG,
        seed=CONFIG["seed"],
    script:
        "../scripts/eval_summary.py"
