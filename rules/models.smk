rule build_tiny_model:
    input:
        corpus=lambda w: CONFIG["model_build"]["corpus"],
    output:
        model=directory(TINY_MODELS["tiny"]),
        summary="resources/models/tiny-qwen2.json",
    log:
        "results/logs/build_tiny_model.log",
    benchmark:
        "results/benchmarks/build_tiny_model.tsv"
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
        summary="resources/models/tiny-llava.json",
    log:
        "results/logs/build_tiny_vlm.log",
    benchmark:
        "results/benchmarks/build_tiny_vlm.tsv"
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
        directory("resources/models/{slug}"),
    log:
        "results/logs/download_model/{slug}.log",
    benchmark:
        "results/benchmarks/download_model/{slug}.tsv"
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
        data="results/{exp}/processed/data.jsonl",
        model=base_model,
    output:
        model=directory("results/{exp}/sft/model"),
        metrics="results/{exp}/sft/metrics.csv",
        summary="results/{exp}/sft/summary.json",
    log:
        "results/{exp}/logs/sft.log",
    benchmark:
        "results/{exp}/benchmarks/sft.tsv"
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
        seed=CONFIG["seed"],
        launcher=lambda w: launcher(experiment(w)["sft"]),
        script=SCRIPTS / "train.py",
    shell:
        "{params.launcher} {params.script} sft --data {input.data} --model {input.model}"
        " --out {output.model} --metrics {output.metrics} --summary {output.summary}"
        " --seed {params.seed} --threads {threads} --settings {params.settings:q}"
        " --tracking {params.tracking:q} > {log} 2>&1"
