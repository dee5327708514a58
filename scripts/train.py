"""Training entry point: `train.py sft ...` (warm start, TRL SFTTrainer) or `train.py dpo ...`
(LoRA DPO, TRL DPOTrainer + PEFT; writes a standard PEFT adapter).

A vision-language model (told from its config) trains on the records' images through TRL's
processor path; its summary also counts the rows `max_length` made it shorten (`truncated`) or
leave out (`skipped`). With `--tracking`, the curves also go to TensorBoard, wandb or swanlab.

A command-line program rather than a Snakemake script so that `accelerate launch` can run it on
several GPUs unchanged; the sft and train_dpo rules call it.
"""

import argparse
import json

from juicebox.io import setup_logging, write_json
from juicebox.options import DPOOptions, SFTOptions
from juicebox.train import train_dpo, train_sft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stage", choices=["sft", "dpo"])
    parser.add_argument("--data", required=True, help="sft: processed data.jsonl; dpo: pairs.parquet")
    for name in ("model", "out", "metrics", "summary", "settings"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--examples", default=None,
                        help="sft: also write the examples in ReaL's prompt_answer kind (juicebox.real_kinds)")
    parser.add_argument("--tracking", default=None,
                        help="JSON: where the curves are also logged (juicebox.tracking.run_settings); none: nowhere")
    args = parser.parse_args()
    log = setup_logging(None)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    train, options = (train_sft, SFTOptions) if args.stage == "sft" else (train_dpo, DPOOptions)
    tracking = json.loads(args.tracking) if args.tracking else None
    settings = options.parse(json.loads(args.settings), args.stage)
    extra = {"examples_out": args.examples} if args.stage == "sft" else {}
    result = train(args.data, args.model, args.out, args.metrics, settings, args.seed, tracking, **extra)
    write_json(args.summary, result)
    log.info("%s done: %s", args.stage, result)


if __name__ == "__main__":
    main()
