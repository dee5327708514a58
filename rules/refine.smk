rule refine_recipe_ksigma:
    input:
        recipe=lambda w: experiment(w)["recipe"],
        stats=layout.path("probe", "stats"),
        model_stats=feedback_model_stats,
    output:
        recipe=layout.path("recipe", "refined"),
        changes=layout.path("recipe", "changes"),
    log:
        layout.log("recipe", "refine_recipe_ksigma"),
    benchmark:
        layout.benchmark("recipe", "refine_recipe_ksigma")
    priority: 1
    conda:
        "../envs/datajuicer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ksigma=lambda w: experiment(w)["ksigma"],
        feedback=lambda w: experiment(w)["feedback"],
    script:
        "../scripts/refine_recipe_ksigma.py"
