# Figures for `snakemake --report report.html`. The k-sigma histograms (rule plot_thresholds) and
# the training curves (rule plot_training) are marked for the report where they are made.


rule plot_process_ops:
    input:
        layout.path("processed", "summary"),
    output:
        report(
            layout.path("processed", "ops"),
            caption="../report/process_ops.rst",
            category="2. Data-Juicer ops",
            subcategory="{exp}",
        ),
    log:
        layout.log("processed", "plot_process_ops"),
    benchmark:
        layout.benchmark("processed", "plot_process_ops")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_process_ops.py"


rule plot_rewards:
    input:
        layout.path("rewards", "scored"),
    output:
        report(
            layout.path("rewards", "plot"),
            caption="../report/rewards.rst",
            category="3. Rewards",
            subcategory="{exp}",
        ),
    log:
        layout.log("rewards", "plot_rewards"),
    benchmark:
        layout.benchmark("rewards", "plot_rewards")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        functions=lambda w: experiment(w)["rewards"]["functions"],
    script:
        "../scripts/plot_rewards.py"


rule plot_margins:
    input:
        layout.path("pairs", "jsonl"),
    output:
        report(
            layout.path("pairs", "plot"),
            caption="../report/margins.rst",
            category="4. Pair margins",
            subcategory="{exp}",
        ),
    log:
        layout.log("pairs", "plot_margins"),
    benchmark:
        layout.benchmark("pairs", "plot_margins")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        pairing=lambda w: experiment(w)["pairing"],
    script:
        "../scripts/plot_margins.py"


rule plot_eval:
    input:
        layout.path("summary", "eval"),
    output:
        report(
            layout.path("summary", "plot"),
            caption="../report/eval.rst",
            category="6. Benchmarks",
            subcategory="{bench}",
        ),
    log:
        layout.log("summary", "plot_eval/{bench}"),
    benchmark:
        layout.benchmark("summary", "plot_eval/{bench}")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_eval.py"
