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
            category="1. Probe: k-sigma thresholds",
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
