rule train_dpo:
    input:
        pairs=layout.path("pairs", "parquet"),
        model=round_policy,
    output:
        **outputs("train", "adapter", "metrics", "summary"),
    log:
        layout.log("train", "train_dpo"),
    benchmark:
        layout.benchmark("train", "train_dpo")
    priority: 1
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
        seed=model_seed,
        launcher=lambda w: launcher(experiment(w)["train"]),
        script=SCRIPTS / "train.py",
    shell:
        "{params.launcher} {params.script} dpo --data {input.pairs} --model {input.model}"
        " --out {output.adapter} --metrics {output.metrics} --summary {output.summary}"
        " --seed {params.seed} --threads {threads} --settings {params.settings:q}"
        " --tracking {params.tracking:q} > {log} 2>&1"


rule train_grpo:
    input:
        data=layout.path("processed", "data"),
        model=policy_model,
        base=base_model,
        models=reward_inputs,
    output:
        **outputs("grpo", "model", "metrics", "summary"),
    log:
        layout.log("grpo", "train_grpo"),
    benchmark:
        layout.benchmark("grpo", "train_grpo")
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: lambda w: experiment(w)["grpo"]["threads"]
    resources:
        mem_mb=8000,
        runtime=480,
        gpu=lambda w: cluster.train_gpus(experiment(w)["grpo"]),
        nodes=lambda w: experiment(w)["grpo"]["nodes"],
        mpi=lambda w: cluster.multinode(experiment(w)["grpo"], "srun"),
        tasks=lambda w: cluster.multinode(
            experiment(w)["grpo"], experiment(w)["grpo"]["nodes"]
        ),
        tasks_per_gpu=lambda w: cluster.multinode(experiment(w)["grpo"], 0),
    params:
        settings=lambda w: json.dumps(experiment(w)["grpo"]),
        rewards=lambda w: json.dumps(experiment(w)["rewards"]["functions"]),
        tracking=lambda w: training_tracking(w, "grpo"),
        seed=model_seed,
        launcher=lambda w: launcher(experiment(w)["grpo"]),
        script=SCRIPTS / "train.py",
    shell:
        "{params.launcher} {params.script} grpo --data {input.data} --model {input.model}"
        " --base {input.base} --out {output.model} --metrics {output.metrics}"
        " --summary {output.summary} --seed {params.seed} --threads {threads}"
        " --settings {params.settings:q} --rewards {params.rewards:q}"
        " --tracking {params.tracking:q} > {log} 2>&1"


rule plot_training:
    input:
        sft=lambda w: (
            [layout.path("sft", "metrics", exp=w.exp)]
            if experiment(w)["sft"]["enabled"]
            else []
        ),
        dpo=layout.path("train", "metrics"),
    output:
        report(
            layout.path("train", "plot"),
            caption="../report/training.rst",
            category="5. Training",
            subcategory="{exp}",
        ),
    log:
        layout.log("train", "plot_training"),
    benchmark:
        layout.benchmark("train", "plot_training")
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_training.py"
