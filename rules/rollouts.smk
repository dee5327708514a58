rule rollout_shard:
    input:
        data=layout.path("processed", "data"),
        model=round_policy,
    output:
        layout.path("rollouts", "shard"),
    log:
        layout.log("rollouts", "rollouts/{shard}"),
    benchmark:
        layout.benchmark("rollouts", "rollouts/{shard}")
    priority: 1
    conda:
        engine_env("rollouts", "envs/train.yaml")
    threads: lambda w: experiment(w)["rollouts"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=lambda w: cluster.engine_gpus(experiment(w)["rollouts"]),
    params:
        settings=lambda w: experiment(w)["rollouts"],
        seed=model_seed,
        server_logs=layout.log_folder("rollouts", "rollouts/servers-{shard}"),
    script:
        "../scripts/rollout_shard.py"


rule gather_rollouts:
    input:
        data=layout.path("processed", "data"),
        shards=shard_files("rollouts"),
    output:
        **outputs("rollouts", "rollouts", "stage"),
    log:
        layout.log("rollouts", "gather_rollouts"),
    benchmark:
        layout.benchmark("rollouts", "gather_rollouts")
    priority: 1
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=lambda w: experiment(w)["rollouts"],
        seed=model_seed,
    script:
        "../scripts/gather_rollouts.py"
