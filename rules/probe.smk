rule probe:
    input:
        pool=layout.path("pool", "pool"),
        recipe=lambda w: experiment(w)["recipe"],
    output:
        **outputs("probe", "stats", "summary"),
    log:
        layout.log("probe", "probe"),
    benchmark:
        layout.benchmark("probe", "probe")
    priority: 1
    conda:
        "../envs/datajuicer.yaml"
    threads: lambda w: experiment(w)["dj"]["np"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        scratch=layout.folder("probe"),
    script:
        "../scripts/probe.py"


rule plot_thresholds:
    input:
        stats=layout.path("probe", "stats"),
        recipe=lambda w: experiment(w)["recipe"],
        refined=layout.path("recipe", "refined"),
    output:
        report(
            directory(layout.path("probe", "histograms")),
            patterns=["{stat}.png"],
            caption="../report/histograms.rst",
            category="1. Probe stats and thresholds",
            subcategory="{exp}",
        ),
    log:
        layout.log("probe", "plot_thresholds"),
    benchmark:
        layout.benchmark("probe", "plot_thresholds")
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
        pool=layout.path("pool", "pool"),
    output:
        stats=layout.path("probe", "model_stats"),
        summary=layout.path("probe", "model_summary"),
    log:
        layout.log("probe", "probe_model"),
    benchmark:
        layout.benchmark("probe", "probe_model")
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
        stats=layout.path("probe", "model_stats"),
        recipe=lambda w: experiment(w)["recipe"],
        refined=layout.path("recipe", "refined"),
    output:
        report(
            directory(layout.path("probe", "model_histograms")),
            patterns=["{stat}.png"],
            caption="../report/model_histograms.rst",
            category="1. Probe stats and thresholds",
            subcategory="{exp} (model stats)",
        ),
    log:
        layout.log("probe", "plot_model_thresholds"),
    benchmark:
        layout.benchmark("probe", "plot_model_thresholds")
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
