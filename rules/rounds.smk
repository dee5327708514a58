# DPO rounds (`rounds: R`): round r+1 samples from round r's policy, the previous policy with its
# DPO adapter merged in, then rewards, pairs and trains again. Round 1 is the model half of the
# other rules files (results/{exp}/rollouts, ..., train, eval); round r >= 2 lives under
# results/{exp}/round{r}/ with the same layout and the same scripts (resumable the same way), plus
# round{r}/policy, the merged model it samples from and trains on.


rule merge_policy:
    input:
        model=previous_policy,
        adapter=previous_adapter,
    output:
        model=directory("results/{exp}/round{round}/policy"),
    log:
        "results/{exp}/logs/round{round}/merge_policy.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/merge_policy.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/merge_policy.py"


use rule rollout_shard as rollout_shard_round with:
    input:
        data="results/{exp}/processed/data.jsonl",
        model=round_policy,
    output:
        "results/{exp}/round{round}/rollouts/shards/{shard}.jsonl",
    log:
        "results/{exp}/logs/round{round}/rollouts/{shard}.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/rollouts/{shard}.tsv"
    params:
        settings=lambda w: experiment(w)["rollouts"],
        seed=CONFIG["seed"],
        server_logs="results/{exp}/logs/round{round}/rollouts/servers-{shard}",


use rule gather_rollouts as gather_rollouts_round with:
    input:
        data="results/{exp}/processed/data.jsonl",
        shards=shard_files("rollouts"),
    output:
        rollouts="results/{exp}/round{round}/rollouts/rollouts.jsonl",
        stage="results/{exp}/round{round}/rollouts/ledger_stage.json",
    log:
        "results/{exp}/logs/round{round}/gather_rollouts.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/gather_rollouts.tsv"


use rule reward_shard as reward_shard_round with:
    input:
        rollouts="results/{exp}/round{round}/rollouts/rollouts.jsonl",
        base=base_model,
        policy=round_policy,
    output:
        "results/{exp}/round{round}/rewards/shards/{shard}.jsonl",
    log:
        "results/{exp}/logs/round{round}/rewards/{shard}.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/rewards/{shard}.tsv"


use rule gather_rewards as gather_rewards_round with:
    input:
        rollouts="results/{exp}/round{round}/rollouts/rollouts.jsonl",
        shards=shard_files("rewards"),
    output:
        scored="results/{exp}/round{round}/rewards/scored.jsonl",
        stage="results/{exp}/round{round}/rewards/ledger_stage.json",
        summary="results/{exp}/round{round}/rewards/summary.json",
    log:
        "results/{exp}/logs/round{round}/gather_rewards.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/gather_rewards.tsv"


use rule make_pairs as make_pairs_round with:
    input:
        "results/{exp}/round{round}/rewards/scored.jsonl",
    output:
        parquet="results/{exp}/round{round}/pairs/pairs.parquet",
        jsonl="results/{exp}/round{round}/pairs/pairs.jsonl",
        llamafactory="results/{exp}/round{round}/pairs/pairs_llamafactory.jsonl",
        dataset_info="results/{exp}/round{round}/pairs/dataset_info.json",
        stage="results/{exp}/round{round}/pairs/ledger_stage.json",
        summary="results/{exp}/round{round}/pairs/summary.json",
    log:
        "results/{exp}/logs/round{round}/make_pairs.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/make_pairs.tsv"


use rule train_dpo as train_dpo_round with:
    input:
        pairs="results/{exp}/round{round}/pairs/pairs.parquet",
        model=round_policy,
    output:
        adapter=directory("results/{exp}/round{round}/train/adapter"),
        metrics="results/{exp}/round{round}/train/metrics.csv",
        summary="results/{exp}/round{round}/train/summary.json",
    log:
        "results/{exp}/logs/round{round}/train_dpo.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/train_dpo.tsv"


use rule evaluate as evaluate_round with:
    input:
        model=round_policy,
        adapter="results/{exp}/round{round}/train/adapter",
    output:
        predictions="results/{exp}/round{round}/eval/{bench}/{variant}.jsonl",
        metrics="results/{exp}/round{round}/eval/{bench}/{variant}.json",
    log:
        "results/{exp}/logs/round{round}/eval/{bench}-{variant}.log",
    benchmark:
        "results/{exp}/benchmarks/round{round}/eval/{bench}-{variant}.tsv"
    params:
        bench=lambda w: experiment(w)["eval"]["benchmarks"][w.bench],
        settings=lambda w: experiment(w)["eval"],
        seed=CONFIG["seed"],
        server_logs="results/{exp}/logs/round{round}/eval/servers-{bench}-{variant}",
