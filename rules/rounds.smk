# DPO rounds (`rounds: R`): every rule of the model half has a {round} wildcard and writes under
# results/{exp}/round{round}/ (juicebox.layout). Round 1 samples from the policy (the SFT model,
# else the base model); round r >= 2 from round{r}/policy, the previous round's policy with its
# DPO adapter merged in, made here.


rule merge_policy:
    input:
        model=previous_policy,
        adapter=previous_adapter,
    output:
        model=directory(layout.path("policy", "policy")),
    log:
        layout.log("policy", "merge_policy"),
    benchmark:
        layout.benchmark("policy", "merge_policy")
    wildcard_constraints:
        round=r"[2-9]|[1-9][0-9]+",
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/merge_policy.py"
