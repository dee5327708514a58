rule train_dpo:
    input:
        pairs="results/{exp}/pairs/pairs.parquet",
        model=policy_model,
    output:
        adapter=directory("results/{exp}/train/adapter"),
        metrics="results/{exp}/train/metrics.csv",
        summary="results/{exp}/train/summary.json",
    log:
        "results/{exp}/logs/train_dpo.log",
    benchmark:
        "results/{exp}/benchmarks/train_dpo.tsv"
    conda:
        "../envs/train.yaml"
    threads: lambda w: experiment(w)["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=480,
        gpu=lambda w: cluster.train_gpus(experiment(w)["train"]),
        nodes=lambda w: experiment(w)["train"]["nodes"],
        # Several nodes: the job's shell calls srun itself (one launcher per node).
        mpi=lambda w: cluster.multinode(experiment(w)["train"], "srun"),
        tasks=lambda w: cluster.multinode(
            experiment(w)["train"], experiment(w)["train"]["nodes"]
        ),
        tasks_per_gpu=lambda w: cluster.multinode(experiment(w)["train"], 0),
    params:
        settings=lambda w: json.dumps(experiment(w)["train"]),
        tracking=lambda w: training_tracking(w, "dpo"),
        seed=CONFIG["seed"],
        launcher=lambda w: launcher(experiment(w)["train"]),
        script=SCRIPTS / "train.py",
    shell:
        "{params.launcher} {params.script} dpo --data {input.pairs} --model {input.model}"
        " --out {output.adapter} --metrics {output.metrics} --summary {output.summary}"
        " --seed {params.seed} --threads {threads} --settings {params.settings:q}"
        " --tracking {params.tracking:q} > {log} 2>&1"


rule plot_training:
    input:
        sft=lambda w: (
            [f"results/{w.exp}/sft/metrics.csv"]
            if experiment(w)["sft"]["enabled"]
            else []
        ),
        dpo="results/{exp}/train/metrics.csv",
    output:
        report(
            "results/{exp}/train/metrics.png",
            caption="../report/training.rst",
            category="5. Training",
            subcategory="{exp}",
        ),
    log:
        "results/{exp}/logs/plot_training.log",
    benchmark:
        "results/{exp}/benchmarks/plot_training.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_training.py"
