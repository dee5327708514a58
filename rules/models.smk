rule build_tiny_model:
    input:
        corpus=lambda w: CONFIG["model_build"]["corpus"],
    output:
        model=directory(TINY_MODELS["tiny"]),
        summary=f"{TINY_MODELS['tiny']}.json",
    log:
        layout.log("models", "build_tiny_model"),
    benchmark:
        layout.benchmark("models", "build_tiny_model")
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=CONFIG["model_build"]["spec"],
        vision=None,
        seed=CONFIG["seed"],
    script:
        "../scripts/build_tiny_model.py"


rule build_tiny_vlm:
    input:
        corpus=lambda w: CONFIG["model_build"]["vlm_corpus"],
    output:
        model=directory(TINY_MODELS["tiny_vlm"]),
        summary=f"{TINY_MODELS['tiny_vlm']}.json",
    log:
        layout.log("models", "build_tiny_vlm"),
    benchmark:
        layout.benchmark("models", "build_tiny_vlm")
    priority: 1
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=CONFIG["model_build"]["spec"],
        vision=CONFIG["model_build"]["vision"],
        seed=CONFIG["seed"],
    script:
        "../scripts/build_tiny_model.py"


rule download_model:
    output:
        directory(f"{layout.MODELS}/{{slug}}"),
    log:
        layout.log("models", "download_model/{slug}"),
    benchmark:
        layout.benchmark("models", "download_model/{slug}")
    wildcard_constraints:
        slug=r"[^/]+--[^/]+",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        repo_id=lambda w: w.slug.replace("--", "/", 1),
    script:
        "../scripts/download_model.py"


rule sft:
    input:
        data=layout.path("processed", "data"),
        model=base_model,
    output:
        **outputs("sft", "model", "metrics", "summary", "prompt_answer"),
    log:
        layout.log("sft", "sft"),
    benchmark:
        layout.benchmark("sft", "sft")
    priority: 2
    conda:
        "../envs/train.yaml"
    threads: lambda w: experiment(w)["sft"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: cluster.train_gpus(experiment(w)["sft"]),
        nodes=lambda w: experiment(w)["sft"]["nodes"],
        # Several nodes: the job's shell calls srun itself (one launcher per node).
        mpi=lambda w: cluster.multinode(experiment(w)["sft"], "srun"),
        tasks=lambda w: cluster.multinode(
            experiment(w)["sft"], experiment(w)["sft"]["nodes"]
        ),
        tasks_per_gpu=lambda w: cluster.multinode(experiment(w)["sft"], 0),
    params:
        settings=lambda w: json.dumps(experiment(w)["sft"]),
        # training_tracking: rules/train.smk
        tracking=lambda w: training_tracking(w, "sft"),
        seed=model_seed,
        launcher=lambda w: launcher(experiment(w)["sft"]),
        script=SCRIPTS / "train.py",
    shell:
        "{params.launcher} {params.script} sft --data {input.data} --model {input.model}"
        " --out {output.model} --metrics {output.metrics} --summary {output.summary}"
        " --examples {output.prompt_answer}"
        " --seed {params.seed} --threads {threads} --settings {params.settings:q}"
        " --tracking {params.tracking:q} > {log} 2>&1"
