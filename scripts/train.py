"""Training entry point: `train.py sft ...` (warm start, TRL SFTTrainer), `train.py dpo ...`
(LoRA DPO, TRL DPOTrainer + PEFT; writes a standard PEFT adapter) or `train.py grpo ...` (online
GRPO/GSPO, TRL GRPOTrainer, rewarded by the experiment's rewards: juicebox.grpo).

A vision-language model (told from its config) trains on the records' images through TRL's
processor path; its summary also counts the rows `max_length` made it shorten (`truncated`) or
leave out (`skipped`). With `--tracking`, the curves also go to TensorBoard, wandb or swanlab.

A command-line program rather than a Snakemake script so that `accelerate launch` can run it on
several GPUs unchanged; the sft, train_dpo and train_grpo rules call it.
"""

import argparse
import json

from juicebox.io import setup_logging, write_json
from juicebox.options import DPOOptions, GRPOOptions, SFTOptions
from juicebox.train import train_dpo, train_sft

OPTIONS = {"sft": SFTOptions, "dpo": DPOOptions, "grpo": GRPOOptions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=sorted(OPTIONS))
    parser.add_argument("--data", required=True, help="sft, grpo: processed data.jsonl; dpo: pairs.parquet")
    for name in ("model", "out", "metrics", "summary", "settings"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--examples", default=None,
                        help="sft: also write the examples in ReaL's prompt_answer kind (juicebox.real_kinds)")
    parser.add_argument("--rewards", default=None, help="grpo: JSON, the experiment's rewards.functions")
    parser.add_argument("--base", default=None, help="grpo: the base model (what model rewards compare with)")
    parser.add_argument("--tracking", default=None,
                        help="JSON: where the curves are also logged (juicebox.tracking.run_settings); none: nowhere")
    args = parser.parse_args()
    log = setup_logging(None)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tracking = json.loads(args.tracking) if args.tracking else None
    settings = OPTIONS[args.stage].parse(json.loads(args.settings), args.stage)
    if args.stage == "grpo":
        from pathlib import Path

        from juicebox.grpo import train_grpo
        from juicebox.rewards import RewardContext

        context = RewardContext(policy_model=args.model, base_model=args.base or args.model, threads=args.threads,
                                seed=args.seed, log_dir=str(Path(args.summary).parent))
        result = train_grpo(args.data, args.model, args.out, args.metrics, settings, json.loads(args.rewards),
                            args.seed, tracking, context)
    elif args.stage == "sft":
        result = train_sft(args.data, args.model, args.out, args.metrics, settings, args.seed, tracking,
                           examples_out=args.examples)
    else:
        result = train_dpo(args.data, args.model, args.out, args.metrics, settings, args.seed, tracking)
    write_json(args.summary, result)
    log.info("%s done: %s", args.stage, result)


if __name__ == "__main__":
    main()
