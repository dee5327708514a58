rule rollout_shard:
    input:
        data="results/{exp}/processed/data.jsonl",
        model=policy_model,
    output:
        "results/{exp}/rollouts/shards/{shard}.jsonl",
    log:
        "results/{exp}/logs/rollouts/{shard}.log",
    benchmark:
        "results/{exp}/benchmarks/rollouts/{shard}.tsv"
    conda:
        engine_env("rollouts", "envs/train.yaml")
    threads: lambda w: experiment(w)["rollouts"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: cluster.engine_gpus(experiment(w)["rollouts"]),
    params:
        settings=lambda w: experiment(w)["rollouts"],
        seed=CONFIG["seed"],
        server_logs="results/{exp}/logs/rollouts/servers-{shard}",
    script:
        "../scripts/rollout_shard.py"


rule gather_rollouts:
    input:
        data="results/{exp}/processed/data.jsonl",
        shards=shard_files("rollouts"),
    output:
        rollouts="results/{exp}/rollouts/rollouts.jsonl",
        stage="results/{exp}/rollouts/ledger_stage.json",
    log:
        "results/{exp}/logs/gather_rollouts.log",
    benchmark:
        "results/{exp}/benchmarks/gather_rollouts.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: experiment(w)["rollouts"],
        seed=CONFIG["seed"],
    script:
        "../scripts/gather_rollouts.py"
