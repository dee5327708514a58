"""Training: the warm-start SFT of the policy and LoRA DPO on the pairs, both with TRL.

Settings come from the validated workflow config as typed objects (TRL's ``SFTConfig`` and
``DPOConfig``, PEFT's ``LoraConfig``), built here once. Both trainings checkpoint every
``save_steps`` into ``<out>.checkpoints/`` and resume from the newest checkpoint when rerun, so a
killed job continues; the finished model or adapter is written atomically and the
checkpoints are removed.

Per logged step, loss (and for DPO the reward margin and accuracy) go to a CSV that the rule
turns into a figure, and to the trackers of the config's ``tracking:`` block through the Trainer's
``report_to`` (:func:`juicebox.tracking.trainer_reporting`: TensorBoard event files under
``results/{exp}/tb/<stage>``, wandb, swanlab; a resumed run goes on writing to the same place).
The CSV and the reported ``train_loss`` are computed at the end from the trainer state's log
history, which every checkpoint keeps, so a run killed and resumed (also through Snakemake, which
deletes a declared output before the rerun) writes the bytes an uninterrupted run writes; the
Trainer's own ``training_loss`` covers only the steps of the last ``train()`` call. The Trainer
prints each log line to the job's log while it runs. The entry point (``scripts/train.py
sft|dpo``) is a plain command-line program, so ``accelerate launch`` can run it on several GPUs
unchanged.

A vision-language model trains through TRL's processor path: the processing class is its
processor, the rows are chat messages whose contents are parts with ``{"type": "image"}`` where
the images go (:func:`records.vision_chat`), and an ``images`` column of PIL images
(``datasets.Sequence(Image())`` over the image paths) feeds TRL's vision collators. TRL cuts a
sequence at ``max_length`` wherever it falls, also through image tokens (which then no longer
match the images), so for vision rows TRL's ``max_length`` is off and :func:`fit_vision_rows`
enforces it before training by shortening the answers; the summary counts the rows it
``truncated`` and ``skipped``. Text models train as before, TRL truncating at ``max_length``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
from pathlib import Path

from .io import atomic_open, read_json, read_jsonl, write_json, write_jsonl
from .options import DPOOptions, LoraOptions, SFTOptions, TrainingOptions

log = logging.getLogger("juicebox")

DPO_COLUMNS = ["step", "epoch", "loss", "rewards/margins", "rewards/accuracies", "rewards/chosen",
               "rewards/rejected", "learning_rate"]
SFT_COLUMNS = ["step", "epoch", "loss", "mean_token_accuracy", "learning_rate"]


def log_at_checkpoints():
    """A TrainerCallback that also logs at every checkpoint and at the last step.

    The loss and the trainers' metrics (DPO's reward margins, SFT's token accuracy) gathered since
    the last log live in memory only; a checkpoint does not keep them. Logging whenever a
    checkpoint is saved makes a resumed run log what an uninterrupted one logs, and logging at the
    last step leaves no step out of the log history, from which ``train_loss`` is computed.
    """
    from transformers import TrainerCallback

    class LogAtCheckpoints(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            # Runs after the Trainer's DefaultFlowCallback, which has decided should_save.
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogAtCheckpoints()


def write_metrics(log_history: list[dict], path: Path, columns: list[str]) -> None:
    """The training logs of ``log_history`` (one row per logged step) as a CSV, atomically."""
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for entry in log_history:
            if "loss" in entry:
                writer.writerow([entry.get(c, "") for c in columns])


def mean_step_loss(log_history: list[dict], steps: int) -> float:
    """The mean loss per step of the whole run: what the Trainer reports as ``training_loss`` for a
    run never interrupted, also after resumes.

    The Trainer adds each step's loss to a float32 sum, and at each log adds that sum (as a Python
    float) to a total and logs it divided by the steps since the previous log; ``training_loss`` is
    the total over the steps. Its total starts at 0 in every ``train()`` call, so after a resume it
    covers only the resumed steps. Here each sum is recovered from the log history (which the
    checkpoints keep): the logged loss times its steps, rounded to float32, which is the float32
    sum exactly (the product's error is far below half a float32 step), added in the same order.
    With a log at the last step (:func:`log_at_checkpoints`), no step is left out.
    """
    import numpy as np

    total, last = 0.0, 0
    for entry in log_history:
        if "loss" in entry:
            total += float(np.float32(entry["loss"] * (entry["step"] - last)))
            last = entry["step"]
    return total / max(steps, 0.001)


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


def reporting(tracking: dict | None, ckpt_dir: Path) -> dict:
    """The Trainer's ``report_to`` and ``run_name`` for the trackers of ``tracking`` (what the rule
    passes as ``--tracking``; none: nothing is reported): a run that will resume from a checkpoint
    in ``ckpt_dir`` keeps writing where it wrote before."""
    from .tracking import trainer_reporting

    checkpoint = latest_checkpoint(ckpt_dir)
    return trainer_reporting(tracking, ckpt_dir, int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None)


def training_args(options: TrainingOptions, output_dir: Path, seed: int, tracking: dict | None,
                  vision: bool = False) -> dict:
    """The TrainingArguments every trainer shares, from its typed options: checkpoints go to
    ``output_dir``; the curves to the trackers of ``tracking`` (:func:`reporting`). A vision-language
    model's rows are fitted to ``max_length`` beforehand (:func:`fit_vision_rows`), so TRL's own
    truncation, which would cut through image tokens, is off for it."""
    import torch

    return dict(
        output_dir=str(output_dir), num_train_epochs=options.epochs, per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, learning_rate=options.learning_rate,
        lr_scheduler_type=options.lr_scheduler,
        # transformers 5 has no warmup_ratio: a warmup_steps below 1 is the share of the optimizer steps
        # (rounded up); TrainingOptions keeps warmup_ratio below 1.
        warmup_steps=options.warmup_ratio,
        max_length=None if vision else options.max_length, logging_steps=options.logging_steps,
        save_strategy="steps", save_steps=options.save_steps, save_total_limit=1, seed=seed, data_seed=seed,
        gradient_checkpointing=options.gradient_checkpointing, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=True,
        # Under accelerate, the launch config's mixed precision (bf16 in the DeepSpeed presets) rules:
        # DeepSpeed refuses a Trainer whose bf16 differs from its own.
        bf16=torch.cuda.is_available() and (options.bf16 or os.environ.get("ACCELERATE_MIXED_PRECISION") == "bf16"),
        **reporting(tracking, output_dir),
    )


def trl_config(options: TrainingOptions, output_dir: Path, seed: int, tracking: dict | None, vision: bool):
    """TRL's config of one training, built from its typed options (:func:`training_args`): an
    ``SFTConfig`` for :class:`~juicebox.options.SFTOptions`, a ``DPOConfig`` for
    :class:`~juicebox.options.DPOOptions` (GRPO's: :func:`juicebox.grpo.grpo_config`)."""
    args = training_args(options, output_dir, seed, tracking, vision)
    if isinstance(options, DPOOptions):
        from trl import DPOConfig

        # sft_weight > 0 adds the chosen answers' NLL to the preference loss (LLaMA-Factory's pref_ftx,
        # RPO): it keeps DPO from lowering the chosen answers' likelihood along with the rejected ones'.
        extra = ["sft"] if options.sft_weight > 0 else []
        return DPOConfig(**args, beta=options.beta, loss_type=[options.loss_type] + extra,
                         loss_weights=[1.0] + [options.sft_weight] * len(extra))
    from trl import SFTConfig

    return SFTConfig(**args, completion_only_loss=True)


def sft_examples(records: list[dict], tasks: list[str] | None) -> list[tuple[dict, str]]:
    """The records SFT trains on (of ``tasks``, when given) with the text each is trained towards:
    its answer, else its first reference (:func:`..records.sft_target`)."""
    from .records import sft_target

    examples = [(record, sft_target(record)) for record in records if not tasks or record.get("task") in tasks]
    examples = [(record, target) for record, target in examples if target is not None]
    if not examples:
        raise ValueError("no processed record has an answer or a reference to train on")
    return examples


def sft_rows(examples: list[tuple[dict, str]], vision: bool = False) -> list[dict]:
    """Prompt-completion chat rows of SFT's examples (:func:`sft_examples`).

    ``vision``: rows for a vision-language model, the prompt in content parts with the record's
    images (paths) in an ``images`` column.
    """
    from .records import prompt_messages, record_images, vision_chat

    rows = []
    for record, target in examples:
        completion = [{"role": "assistant", "content": target}]
        if vision:
            images = record_images(record)
            rows.append({"prompt": vision_chat(record["prompt"], len(images)), "completion": completion,
                         "images": images})
        else:
            rows.append({"prompt": prompt_messages(record["prompt"]), "completion": completion})
    return rows


def train_dataset(rows: list[dict], vision: bool):
    """The rows as a ``datasets.Dataset``; for a vision-language model the ``images`` paths are cast
    to ``Sequence(Image())``, so TRL's vision collators get PIL images."""
    from datasets import Dataset, Image, Sequence

    dataset = Dataset.from_list(rows)
    return dataset.cast_column("images", Sequence(Image())) if vision else dataset


def _rendered_lengths(row: dict, answers: tuple[str, ...], processor, prompt_lengths: dict) -> tuple[int, dict]:
    """Token counts of a vision row as TRL's vision collators build it: the prompt with each
    image's tokens (the processor expands them, for Qwen2-VL by image size), and each answer.

    The row is rendered with TRL's own functions, as the collators render it (the image paths
    stand in for the images: rendering does not read them). A prompt's count is kept in
    ``prompt_lengths``, so its images are read once (a prompt's pairs share it).
    """
    from trl import apply_chat_template, prepare_multimodal_messages

    from .images import load_image
    from .models import tokenizer_of

    example = {"prompt": prepare_multimodal_messages(row["prompt"], images=row["images"]),
               **{column: prepare_multimodal_messages(row[column]) for column in answers}}
    text = apply_chat_template(example, processor)
    key = (text["prompt"], tuple(row["images"]))
    if key not in prompt_lengths:
        images = [load_image(path) for path in row["images"]]
        encoded = processor(images=[images] if images else None, text=[text["prompt"]], add_special_tokens=False)
        prompt_lengths[key] = len(encoded["input_ids"][0])
    tokenizer = tokenizer_of(processor)
    return prompt_lengths[key], {column: len(tokenizer(text[column], add_special_tokens=False)["input_ids"])
                                 for column in answers}


def fit_vision_rows(rows: list[dict], processor, max_length: int, answers: tuple[str, ...]) -> tuple[list[dict], dict]:
    """The vision rows fitted to ``max_length`` tokens, and the counts ``{"truncated", "skipped"}``.

    A row longer than ``max_length`` (its prompt with the image tokens, plus an answer) has that
    answer shortened, token by token from its end, until it fits; the shortened answer still
    closes its turn as the chat template does. A row whose prompt leaves no room for a single
    token of an answer is skipped. Image tokens are never cut: TRL would cut through them and
    the images would then no longer match their tokens. Raises ``ValueError`` when every row is
    skipped.
    """
    from .models import tokenizer_of

    tokenizer = tokenizer_of(processor)
    prompt_lengths: dict = {}
    fitted, truncated = [], 0
    for row in rows:
        prompt_len, lengths = _rendered_lengths(row, answers, processor, prompt_lengths)
        if prompt_len + max(lengths.values()) <= max_length:
            fitted.append(row)
            continue
        row = dict(row)
        for column in answers:
            ids = tokenizer(row[column][0]["content"], add_special_tokens=False)["input_ids"]
            keep = len(ids)
            while prompt_len + lengths[column] > max_length:
                keep -= prompt_len + lengths[column] - max_length  # always down, so the loop ends
                if keep <= 0:
                    break
                row[column] = [{**row[column][0], "content": tokenizer.decode(ids[:keep])}]
                prompt_len, lengths = _rendered_lengths(row, answers, processor, prompt_lengths)
            if prompt_len + lengths[column] > max_length:
                break
        else:
            fitted.append(row)
            truncated += 1
    counts = {"truncated": truncated, "skipped": len(rows) - len(fitted)}
    log.info("max_length %d: %d of %d row(s) had an answer shortened to fit, %d skipped (the prompt with its "
             "image tokens leaves no room for an answer)", max_length, truncated, len(rows), counts["skipped"])
    if not fitted:
        raise ValueError(f"every row's prompt, with its image tokens, leaves no room for an answer within "
                         f"max_length {max_length}: raise max_length")
    return fitted, counts


def training_rows(rows: list[dict], processing, vision: bool, max_length: int,
                  answers: tuple[str, ...]) -> tuple[list[dict], dict]:
    """The rows to train on and the counts for the summary: a vision-language model's rows fitted to
    ``max_length`` by :func:`fit_vision_rows` (:func:`trl_config` turns TRL's truncation off for
    them); a text model's rows as they are (TRL truncates them)."""
    if not vision:
        return rows, {}
    return fit_vision_rows(rows, processing, max_length, answers)


def train_sft(data: str, model_path: str, out: str, metrics: str, options: SFTOptions, seed: int,
              tracking: dict | None = None, examples_out: str | None = None) -> dict:
    """Full fine-tune of ``model_path`` on the processed pool; the model goes to ``out``; the curves
    also to the trackers of ``tracking`` (:func:`juicebox.tracking.run_settings`); the examples, in
    ReaL's ``prompt_answer`` kind (:mod:`juicebox.real_kinds`), to ``examples_out`` when given.

    The summary: ``examples`` (rows built from the records), for a vision-language model the
    ``truncated`` and ``skipped`` counts of :func:`fit_vision_rows`, ``steps`` and ``train_loss``.
    """
    from trl import SFTTrainer

    from .models import is_vision_language, load_processing, save_model

    out_dir = Path(out)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    vision = is_vision_language(model_path)
    examples = sft_examples(read_jsonl(data), options.tasks)
    rows = sft_rows(examples, vision)
    processing = load_processing(model_path, padding_side="right", vision=vision)
    trained, fitted = training_rows(rows, processing, vision, options.max_length, ("completion",))
    model = vision_model_for_training(model_path, options) if vision else model_path
    trainer = SFTTrainer(model=model, args=trl_config(options, ckpt_dir, seed, tracking, vision),
                         train_dataset=train_dataset(trained, vision), processing_class=processing,
                         callbacks=[log_at_checkpoints()])
    result = _train(trainer, ckpt_dir, Path(metrics), SFT_COLUMNS)
    save_model(trainer.model, processing, out_dir)
    if examples_out is not None and trainer.is_world_process_zero():
        from .real_kinds import prompt_answer_rows

        write_jsonl(examples_out, prompt_answer_rows([r for r, _ in examples], [t for _, t in examples]))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"examples": len(rows), **fitted, **result}


# Parameter names of vision towers and of the projectors between them and the language model
# (LLaVA, Gemma 3: vision_tower, multi_modal_projector; Qwen2-VL: visual, visual.merger;
# Idefics3/SmolVLM: vision_model, connector).
VISION_TOWER = re.compile(r"(?:^|\.)(?:vision_tower|visual|vision_model)\.")
PROJECTOR = re.compile(r"(?:^|\.)(?:multi_modal_projector|connector|merger|mm_projector)\.")


def vision_model_for_training(model_path: str, options: SFTOptions):
    """A vision-language model for a full fine-tune, its vision tower (and, if asked, its projector)
    frozen: ``freeze_vision_tower`` (default, as LLaVA-1.5 and LLaMA-Factory train) and
    ``freeze_multi_modal_projector``."""
    from .models import model_class

    model = model_class(True).from_pretrained(model_path)
    frozen = 0
    for name, parameter in model.named_parameters():
        if (options.freeze_multi_modal_projector and PROJECTOR.search(name)) or \
                (options.freeze_vision_tower and VISION_TOWER.search(name) and not PROJECTOR.search(name)):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    log.info("training %d of %d parameters (%d frozen: vision tower %s, projector %s)",
             sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()),
             frozen, "frozen" if options.freeze_vision_tower else "trained",
             "frozen" if options.freeze_multi_modal_projector else "trained")
    return model


def lora_config(lora: LoraOptions):
    """PEFT LoraConfig from the config's train.lora block."""
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM", bias="none")


def dpo_rows(pairs: str, vision: bool) -> list[dict]:
    """The chat preference rows of ``pairs.parquet``: prompt, chosen, rejected, and for a
    vision-language model the ``images`` paths.

    A text model does not see images: prompts in content parts (a set with images) become their
    text (:func:`records.content_text`), with a warning.
    """
    import pyarrow.parquet as pq

    from .pairs.formats import has_parts
    from .records import content_text

    columns = ["prompt", "chosen", "rejected"] + (["images"] if vision else [])
    rows = pq.read_table(pairs, columns=columns).to_pylist()
    if has_parts(rows) and not vision:
        log.warning("%s: the pairs have images, which a text model does not see; it trains on their text", pairs)
        for row in rows:
            row["prompt"] = [{**turn, "content": content_text(turn["content"])} for turn in row["prompt"]]
    return rows


def train_dpo(pairs: str, model_path: str, out: str, metrics: str, options: DPOOptions, seed: int,
              tracking: dict | None = None) -> dict:
    """LoRA DPO of ``model_path`` on ``pairs`` (TRL format); a standard PEFT adapter goes to ``out``;
    the curves also to the trackers of ``tracking`` (:func:`juicebox.tracking.run_settings`).

    The summary: ``pairs`` (rows of the file), for a vision-language model the ``truncated`` and
    ``skipped`` counts of :func:`fit_vision_rows`, ``steps`` and ``train_loss``.
    """
    from trl import DPOTrainer

    from .models import is_vision_language, load_processing

    vision = is_vision_language(model_path)
    rows = dpo_rows(pairs, vision)
    if not rows:
        raise ValueError(f"{pairs}: no pairs to train on; see the pairs stage of the ledger for why")
    out_dir = Path(out)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    processing = load_processing(model_path, padding_side="right", vision=vision)
    trained, fitted = training_rows(rows, processing, vision, options.max_length, ("chosen", "rejected"))
    trainer = DPOTrainer(model=model_path, args=trl_config(options, ckpt_dir, seed, tracking, vision),
                         train_dataset=train_dataset(trained, vision), processing_class=processing,
                         peft_config=lora_config(options.lora), callbacks=[log_at_checkpoints()])
    result = _train(trainer, ckpt_dir, Path(metrics), DPO_COLUMNS)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.model.save_pretrained(tmp)
    sort_set_fields(tmp / "adapter_config.json", trainer.model.peft_config)
    processing.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return {"pairs": len(rows), **fitted, **result}


def sort_set_fields(config_path: Path, peft_configs: dict) -> None:
    """Rewrite a saved ``adapter_config.json`` with the lists PEFT made from sets sorted.

    PEFT keeps some fields as sets (``target_modules`` once ``all-linear`` is resolved) and writes
    them as lists in set order, which changes from one process to the next (string hashing).
    """
    set_fields = {key for cfg in peft_configs.values() for key, value in vars(cfg).items() if isinstance(value, set)}
    config = read_json(config_path)
    for key in set_fields & set(config):
        if isinstance(config[key], list):
            config[key] = sorted(config[key])
    write_json(config_path, config, sort_keys=True)  # PEFT sorts the keys too


def _train(trainer, ckpt_dir: Path, metrics: Path, columns: list[str]) -> dict:
    """Run ``trainer`` from the newest checkpoint if there is one; write the metrics CSV at the end.

    The summary holds what an uninterrupted run reports: whether and where the run resumed goes
    to the log only, so a resumed run's summary has the same bytes.
    """
    resume = latest_checkpoint(ckpt_dir)
    if resume:
        log.info("resuming from %s", resume)
    output = trainer.train(resume_from_checkpoint=resume)
    history = trainer.state.log_history
    train_loss = mean_step_loss(history, output.global_step)
    log.info("train_loss %r over %d step(s); the Trainer reports %r for the steps of this call%s", train_loss,
             output.global_step, output.training_loss, f" (resumed from {resume})" if resume else "")
    if not resume and train_loss != output.training_loss:
        log.warning("train_loss from the log history (%r) differs from the Trainer's (%r): has the Trainer's "
                    "loss accounting changed?", train_loss, output.training_loss)
    if trainer.is_world_process_zero():
        write_metrics(history, metrics, columns)
    return {"steps": output.global_step, "train_loss": train_loss}
