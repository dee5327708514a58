rule process_data:
    input:
        pool=layout.path("pool", "pool"),
        recipe=layout.path("recipe", "refined"),
        model_stats=feedback_model_stats,
    output:
        **outputs("processed", "data", "prompts", "stage", "summary"),
    log:
        layout.log("processed", "process_data"),
    benchmark:
        layout.benchmark("processed", "process_data")
    priority: 1
    conda:
        "../envs/datajuicer.yaml"
    threads: lambda w: experiment(w)["dj"]["np"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        scratch=layout.folder("processed"),
        dj=lambda w: experiment(w)["dj"],
        before_ops=lambda w: experiment(w)["feedback"]["before_ops"],
    script:
        "../scripts/process_data.py"
