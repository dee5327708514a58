rule probe:
    input:
        pool="results/{exp}/pool/pool.jsonl",
        recipe=lambda w: experiment(w)["recipe"],
    output:
        stats="results/{exp}/probe/stats.jsonl",
        summary="results/{exp}/probe/summary.json",
    log:
        "results/{exp}/logs/probe.log",
    benchmark:
        "results/{exp}/benchmarks/probe.tsv"
    conda:
        "../envs/datajuicer.yaml"
    threads: lambda w: experiment(w)["dj"]["np"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        scratch="results/{exp}/probe",
    script:
        "../scripts/probe.py"


rule plot_thresholds:
    input:
        stats="results/{exp}/probe/stats.jsonl",
        recipe=lambda w: experiment(w)["recipe"],
        refined="results/{exp}/recipe/refined.yaml",
    output:
        report(
            directory("results/{exp}/probe/histograms"),
            patterns=["{stat}.png"],
            caption="../report/histograms.rst",
            category="1. Probe stats and thresholds",
            subcategory="{exp}",
        ),
    log:
        "results/{exp}/logs/plot_thresholds.log",
    benchmark:
        "results/{exp}/benchmarks/plot_thresholds.tsv"
    conda:
        "../envs/datajuicer.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        ksigma=lambda w: experiment(w)["ksigma"],
    script:
        "../scripts/plot_thresholds.py"


rule probe_model:
    input:
        unpack(feedback_inputs),
        pool="results/{exp}/pool/pool.jsonl",
    output:
        stats="results/{exp}/probe/model_stats.jsonl",
        summary="results/{exp}/probe/model_summary.json",
    log:
        "results/{exp}/logs/probe_model.log",
    benchmark:
        "results/{exp}/benchmarks/probe_model.tsv"
    conda:
        "../envs/train.yaml"
    threads: lambda w: experiment(w)["feedback"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    params:
        feedback=lambda w: experiment(w)["feedback"],
        source=lambda w: experiment(w)["feedback"]["from"] or w.exp,
    script:
        "../scripts/probe_model.py"


rule plot_model_thresholds:
    input:
        stats="results/{exp}/probe/model_stats.jsonl",
        recipe=lambda w: experiment(w)["recipe"],
        refined="results/{exp}/recipe/refined.yaml",
    output:
        report(
            directory("results/{exp}/probe/model_histograms"),
            patterns=["{stat}.png"],
            caption="../report/model_histograms.rst",
            category="1. Probe stats and thresholds",
            subcategory="{exp} (model stats)",
        ),
    log:
        "results/{exp}/logs/plot_model_thresholds.log",
    benchmark:
        "results/{exp}/benchmarks/plot_model_thresholds.tsv"
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
        "../scripts/plot_thresholds.py"
