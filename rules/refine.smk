rule refine_recipe_ksigma:
    input:
        recipe=lambda w: experiment(w)["recipe"],
        stats="results/{exp}/probe/stats.jsonl",
        model_stats=feedback_model_stats,
    output:
        recipe="results/{exp}/recipe/refined.yaml",
        changes="results/{exp}/recipe/changes.json",
    log:
        "results/{exp}/logs/refine_recipe_ksigma.log",
    benchmark:
        "results/{exp}/benchmarks/refine_recipe_ksigma.tsv"
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
