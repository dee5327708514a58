rule reward_shard:
    input:
        rollouts="results/{exp}/rollouts/rollouts.jsonl",
        base=base_model,
        policy=policy_model,
    output:
        "results/{exp}/rewards/shards/{shard}.jsonl",
    log:
        "results/{exp}/logs/rewards/{shard}.log",
    benchmark:
        "results/{exp}/benchmarks/rewards/{shard}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: lambda w: experiment(w)["rewards"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=reward_gpus,
    params:
        settings=lambda w: experiment(w)["rewards"],
        seed=CONFIG["seed"],
    script:
        "../scripts/reward_shard.py"


rule gather_rewards:
    input:
        rollouts="results/{exp}/rollouts/rollouts.jsonl",
        shards=shard_files("rewards"),
    output:
        scored="results/{exp}/rewards/scored.jsonl",
        stage="results/{exp}/rewards/ledger_stage.json",
        summary="results/{exp}/rewards/summary.json",
    log:
        "results/{exp}/logs/gather_rewards.log",
    benchmark:
        "results/{exp}/benchmarks/gather_rewards.tsv"
    conda:
        "../envs/io.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/gather_rewards.py"
