"""Training: the warm-start SFT of the policy and LoRA DPO on the pairs, both with TRL.

Settings come from the validated workflow config as typed objects (TRL's ``SFTConfig`` and
``DPOConfig``, PEFT's ``LoraConfig``), built here once. Both trainings checkpoint every
``save_steps`` into ``<out>.checkpoints/`` and resume from the newest checkpoint when rerun, so a
killed job continues; the finished model or adapter is written atomically and the
checkpoints are removed.

Per step, loss (and for DPO the reward margin and accuracy) go to a CSV that the rule turns into
a figure. The entry points (``scripts/train_sft.py``, ``scripts/train_dpo.py``) are plain
command-line programs, so ``accelerate launch`` can run them on several GPUs unchanged.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

from .io import atomic_open, read_jsonl

log = logging.getLogger("juicebox")

DPO_COLUMNS = ["step", "epoch", "loss", "rewards/margins", "rewards/accuracies", "rewards/chosen",
               "rewards/rejected", "learning_rate"]
SFT_COLUMNS = ["step", "epoch", "loss", "mean_token_accuracy", "learning_rate"]


def metrics_callback(path: Path, columns: list[str]):
    """A TrainerCallback appending each logged step's metrics to ``path`` (kept across resumes)."""
    from transformers import TrainerCallback

    class WriteMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            new = not path.exists()
            with open(path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new:
                    writer.writerow(columns)
                row = {"step": state.global_step, **logs}
                writer.writerow([row.get(c, "") for c in columns])

    return WriteMetrics()


def latest_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder, or None; half-written ones are removed.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut short by
    a kill and cannot be resumed from.
    """
    if not folder.is_dir():
        return None
    complete = []
    for path in folder.glob("checkpoint-*"):
        if (path / "trainer_state.json").is_file():
            complete.append(path)
        else:
            log.warning("removing %s: written only in part (the job was killed while saving)", path)
            shutil.rmtree(path)
    complete.sort(key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(complete[-1]) if complete else None


def common_args(settings: dict, output_dir: Path, seed: int) -> dict:
    """TrainingArguments shared by SFT and DPO, from the config's train/sft block."""
    import torch

    return dict(
        output_dir=str(output_dir), num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        learning_rate=settings["learning_rate"], lr_scheduler_type=settings["lr_scheduler"],
        warmup_steps=settings["warmup_ratio"], max_length=settings["max_length"], logging_steps=settings["logging_steps"],
        save_strategy="steps", save_steps=settings["save_steps"], save_total_limit=1, report_to=[], seed=seed,
        data_seed=seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
        # Under accelerate, the launch config's mixed precision (bf16 in the DeepSpeed presets) rules:
        # DeepSpeed refuses a Trainer whose bf16 differs from its own.
        bf16=torch.cuda.is_available()
        and (settings["bf16"] or os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16"),
    )


def sft_dataset(records: list[dict], tasks: list[str] | None):
    """Prompt-completion chat rows from processed records: math → answer, caption → first reference."""
    from datasets import Dataset

    from .engines import to_messages

    rows = []
    for record in records:
        if tasks and record.get("task") not in tasks:
            continue
        target = record.get("answer") or (record.get("references") or [None])[0]
        if not target:
            continue
        rows.append({"prompt": to_messages(record["prompt"]),
                     "completion": [{"role": "assistant", "content": str(target)}]})
    if not rows:
        raise ValueError("no processed record has an answer or a reference to train on")
    return Dataset.from_list(rows)


def train_sft(data: str, model_path: str, out: str, metrics: str, settings: dict, seed: int) -> dict:
    """Full fine-tune of ``model_path`` on the processed pool; the model goes to ``out``."""
    from trl import SFTConfig, SFTTrainer

    from .models import load_tokenizer, save_model

    out_dir = Path(out)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    dataset = sft_dataset(read_jsonl(data), settings.get("tasks"))
    tokenizer = load_tokenizer(model_path, padding_side="right")
    args = SFTConfig(**common_args(settings, ckpt_dir, seed), completion_only_loss=True)
    trainer = SFTTrainer(model=model_path, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[metrics_callback(Path(metrics), SFT_COLUMNS)])
    result = _train(trainer, ckpt_dir, Path(metrics))
    save_model(trainer.model, tokenizer, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"examples": len(dataset), **result}


def lora_config(settings: dict):
    """PEFT LoraConfig from the config's train.lora block."""
    from peft import LoraConfig

    lora = settings["lora"]
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                      target_modules=lora["target_modules"], task_type="CAUSAL_LM", bias="none")


def train_dpo(pairs: str, model_path: str, out: str, metrics: str, settings: dict, seed: int) -> dict:
    """LoRA DPO of ``model_path`` on ``pairs`` (TRL format); a standard PEFT adapter goes to ``out``."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from .models import load_tokenizer

    table = pq.read_table(pairs, columns=["prompt", "chosen", "rejected"])
    dataset = Dataset.from_list(table.to_pylist())
    if len(dataset) == 0:
        raise ValueError(f"{pairs}: no pairs to train on; see the pairs stage of the ledger for why")
    out_dir = Path(out)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    tokenizer = load_tokenizer(model_path, padding_side="right")
    args = DPOConfig(**common_args(settings, ckpt_dir, seed), beta=settings["beta"],
                     loss_type=[settings["loss_type"]])
    trainer = DPOTrainer(model=model_path, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(settings), callbacks=[metrics_callback(Path(metrics), DPO_COLUMNS)])
    result = _train(trainer, ckpt_dir, Path(metrics))
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"pairs": len(dataset), **result}


def drop_rows_after(metrics: Path, step: int) -> None:
    """Forget the metrics of steps after ``step``: a resumed run logs them again."""
    if not metrics.exists():
        return
    with open(metrics, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    with atomic_open(metrics) as handle:
        handle.write("\n".join(kept) + "\n")


def _train(trainer, ckpt_dir: Path, metrics: Path) -> dict:
    """Run ``trainer`` from the newest checkpoint if there is one (a fresh metrics CSV otherwise)."""
    resume = latest_checkpoint(ckpt_dir)
    if resume:
        log.info("resuming from %s", resume)
        drop_rows_after(metrics, int(resume.rsplit("-", 1)[1]))
    elif metrics.exists():
        metrics.unlink()
    output = trainer.train(resume_from_checkpoint=resume)
    return {"steps": output.global_step, "train_loss": output.training_loss, "resumed_from": resume}


def plot_metrics(curves: list[tuple[str, str]], png_path: str) -> None:
    """One row of panels per (label, metrics CSV): loss, and for DPO reward margin and accuracy, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = []
    for label, csv_path in curves:
        with open(csv_path, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        panels = [c for c in ("loss", "mean_token_accuracy", "rewards/margins", "rewards/accuracies")
                  if rows and c in rows[0] and any(r[c] for r in rows)]
        tables.append((label, rows, panels))
    width = max(len(panels) for _, _, panels in tables)
    fig, axes = plt.subplots(len(tables), width, figsize=(3.5 * width, 2.8 * len(tables)), squeeze=False)
    for row_axes, (label, rows, panels) in zip(axes, tables):
        for ax in row_axes[len(panels):]:
            ax.axis("off")
        for ax, column in zip(row_axes, panels):
            points = [(int(r["step"]), float(r[column])) for r in rows if r[column]]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
            ax.set_xlabel("step")
            ax.set_title(f"{label}: {column}")
    fig.tight_layout()
    with atomic_open(png_path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
