# The models made before the DPO rounds (base, sft) are evaluated in results/{exp}/eval/; each
# round's trained policy (dpo) in its round's folder (rule evaluate_policy, the same job).
rule evaluate:
    input:
        unpack(variant_inputs),
    output:
        **outputs("eval", "predictions", "metrics"),
    log:
        layout.log("eval", "eval/{bench}-{variant}"),
    benchmark:
        layout.benchmark("eval", "eval/{bench}-{variant}")
    wildcard_constraints:
        variant=variant_pattern("eval"),
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
        seed=eval_seed,
        server_logs=layout.log_folder("eval", "eval/servers-{bench}-{variant}"),
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_policy with:
    output:
        **outputs("round_eval", "predictions", "metrics"),
    log:
        layout.log("round_eval", "eval/{bench}-{variant}"),
    benchmark:
        layout.benchmark("round_eval", "eval/{bench}-{variant}")
    wildcard_constraints:
        variant=variant_pattern("round_eval"),
    params:
        bench=lambda w: experiment(w)["eval"]["benchmarks"][w.bench],
        settings=lambda w: experiment(w)["eval"],
        seed=eval_seed,
        server_logs=layout.log_folder("round_eval", "eval/servers-{bench}-{variant}"),


rule eval_summary:
    input:
        eval_outputs(),
    output:
        layout.path("summary", "eval"),
    log:
        layout.log("summary", "eval_summary"),
    benchmark:
        layout.benchmark("summary", "eval_summary")
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
        groups=CONFIG["replicate_groups"],
        config=CONFIG,
        seed=CONFIG["seed"],
        schema=Path(workflow.basedir) / "docs" / "eval.schema.json",
    script:
        "../scripts/eval_summary.py"
