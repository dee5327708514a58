# Experiment tracking (`tracking:`). The SFT and DPO jobs log their curves themselves, through
# TRL's report_to (training_tracking in rules/common.smk); track_eval logs results/eval.json.


rule track_eval:
    input:
        layout.path("summary", "eval"),
    output:
        layout.path("tracking", "done"),
    log:
        layout.log("tracking", "track_eval"),
    benchmark:
        layout.benchmark("tracking", "track_eval")
    conda:
        "../envs/tracking.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        run=lambda w: tracking_lib.run_settings(CONFIG["tracking"], w.exp, "eval"),
    script:
        "../scripts/track_eval.py"
