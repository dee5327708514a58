rule reward_shard:
    input:
        rollouts=layout.path("rollouts", "rollouts"),
        base=base_model,
        policy=round_policy,
        models=reward_inputs,
    output:
        layout.path("rewards", "shard"),
    log:
        layout.log("rewards", "rewards/{shard}"),
    benchmark:
        layout.benchmark("rewards", "rewards/{shard}")
    priority: 1
    conda:
        "../envs/eval.yaml"
    threads: lambda w: experiment(w)["rewards"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=reward_gpus,
    params:
        settings=lambda w: experiment(w)["rewards"],
        seed=model_seed,
    script:
        "../scripts/reward_shard.py"


rule gather_rewards:
    input:
        rollouts=layout.path("rollouts", "rollouts"),
        shards=shard_files("rewards"),
    output:
        **outputs("rewards", "scored", "stage", "summary"),
    log:
        layout.log("rewards", "gather_rewards"),
    benchmark:
        layout.benchmark("rewards", "gather_rewards")
    priority: 1
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gather_rewards.py"
