# Figures for `snakemake --report report.html`. The k-sigma histograms (rule plot_thresholds) and
# the training curves (rule plot_training) are marked for the report where they are made.


rule plot_process_ops:
    input:
        "results/{exp}/processed/summary.json",
    output:
        report(
            "results/{exp}/processed/ops.png",
            caption="../report/process_ops.rst",
            category="2. Data-Juicer ops",
            subcategory="{exp}",
        ),
    log:
        "results/{exp}/logs/plot_process_ops.log",
    benchmark:
        "results/{exp}/benchmarks/plot_process_ops.tsv"
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
        "results/{exp}/rewards/scored.jsonl",
    output:
        report(
            "results/{exp}/rewards/rewards.png",
            caption="../report/rewards.rst",
            category="3. Rewards",
            subcategory="{exp}",
        ),
    log:
        "results/{exp}/logs/plot_rewards.log",
    benchmark:
        "results/{exp}/benchmarks/plot_rewards.tsv"
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
        "results/{exp}/pairs/pairs.jsonl",
    output:
        report(
            "results/{exp}/pairs/margins.png",
            caption="../report/margins.rst",
            category="4. Pair margins",
            subcategory="{exp}",
        ),
    log:
        "results/{exp}/logs/plot_margins.log",
    benchmark:
        "results/{exp}/benchmarks/plot_margins.tsv"
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
        "results/eval.json",
    output:
        report(
            "results/eval_{bench}.png",
            caption="../report/eval.rst",
            category="6. Benchmarks",
            subcategory="{bench}",
        ),
    log:
        "results/logs/plot_eval/{bench}.log",
    benchmark:
        "results/benchmarks/plot_eval/{bench}.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_eval.py"
