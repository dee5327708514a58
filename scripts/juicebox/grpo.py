"""Online RL: GRPO and GSPO on TRL's ``GRPOTrainer``, rewarded by the experiment's own rewards.

The policy (the SFT model, else the base model) samples ``num_generations`` answers to every
processed prompt; the experiment's registered rewards (``rewards.functions``, combined as for DPO
by :class:`~juicebox.rewards.CombinedReward`, images included for a vision-language model) score
them; TRL turns each group's rewards into advantages and takes a clipped policy-gradient step.

``algorithm`` picks the objective (:data:`ALGORITHMS`; any of its keys may be set by hand):

* ``gspo``: DeepVision's (seed 003) verl recipe as TRL spells it: a sequence-level importance
  ratio (``importance_sampling_level: sequence``) with ``loss_type: grpo`` and the clip range
  3e-4 / 4e-4;
* ``grpo``: the token-level ratio, ``loss_type: grpo``, clip 0.2.

Both default to DeepVision's other settings: KL to the reference 0.001 (TRL's estimator is the
k3 "low_var_kl" verl uses), rewards scaled per group, T 1.0, top_p 1, and ``filter_groups``.

``filter_groups`` is verl's DAPO filter: groups whose answers all got the same reward carry no
signal (their advantages are 0) and leave the batch (:func:`informative_rows`), so the loss is
averaged over the informative groups only. verl then generates further batches until the train
batch is full again; here a step trains on the groups that are left (the share left out is the
curve ``filtered_groups``), and a step where none is left trains on the whole batch, whose
advantages are all 0 (only the KL term moves the policy).

Generation: in process with transformers' ``generate`` (``vllm_server: null``, what runs on CPU),
or by a ``trl vllm-serve`` server on GPUs (TRL's server mode, ``vllm_server: http://host:port``).

Checkpoints and resume are those of SFT and DPO (:func:`juicebox.train._train`): a generation
batch spans ``steps_per_generation`` micro-steps, so ``save_steps`` falls on a generation boundary
(:meth:`~juicebox.options.GRPOOptions.check_at`) and a resumed run samples what the killed run
would have sampled. The finished policy is written as a full model (a LoRA adapter merged into
it), evaluated as the ``grpo`` variant.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .io import read_jsonl
from .options import GRPOOptions

log = logging.getLogger("juicebox")

# Per logged step: TRL's GRPO curves (reward mean and std, KL to the reference, the share of tokens
# or sequences clipped, answer length) and the share of groups filter_groups left out.
GRPO_COLUMNS = ["step", "epoch", "loss", "reward", "reward_std", "kl", "clip_ratio/region_mean",
                "frac_reward_zero_std", "filtered_groups", "completions/mean_length", "learning_rate"]


def informative_rows(advantages, group_size: int, chunks: int) -> list[int] | None:
    """The rows to keep of a generation batch whose consecutive ``group_size`` rows are one prompt's
    answers: those of the groups whose advantages are not all 0 (their rewards differed), topped up
    with left-out groups (in order) until the rows split into ``chunks`` equal non-empty parts.
    None: keep every row (no group was left out, or the rows are not whole groups)."""
    import torch

    if advantages.numel() % group_size:
        return None
    groups = advantages.view(-1, group_size)
    equal = torch.all(groups == 0, dim=1).tolist()
    if not any(equal):
        return None
    kept = [g for g, same in enumerate(equal) if not same]
    left = [g for g, same in enumerate(equal) if same]
    while left and (not kept or (len(kept) * group_size) % chunks):
        kept.append(left.pop(0))
    kept.sort()
    return [g * group_size + i for g in kept for i in range(group_size)]


def rows_of(output: dict, keep: list[int]) -> dict:
    """The generation batch ``output`` with only the rows ``keep``: every tensor or list with one
    entry per row is indexed, and ``num_items_in_batch`` (DAPO's token count) recounted."""
    import torch

    rows = len(output["advantages"])
    index = torch.tensor(keep, device=output["advantages"].device)
    out = {}
    for key, value in output.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == rows:
            out[key] = value.index_select(0, index)
        elif isinstance(value, list) and len(value) == rows:
            out[key] = [value[i] for i in keep]
        else:
            out[key] = value
    if "num_items_in_batch" in output:
        out["num_items_in_batch"] = out["completion_mask"].sum().to(output["num_items_in_batch"].dtype)
    return out


def trainer_class(filter_groups: bool):
    """TRL's GRPOTrainer, with verl's ``filter_groups`` when asked (:func:`informative_rows`)."""
    from trl import GRPOTrainer

    class JuiceboxGRPOTrainer(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            if not (filter_groups and self.model.training):
                return output
            if "image_grid_thw" in output:  # patches of every image in one tensor: rows cannot be picked
                return output
            keep = informative_rows(output["advantages"], self.num_generations, self.args.steps_per_generation)
            rows = len(output["advantages"])
            self._metrics["train"]["filtered_groups"].append(0.0 if keep is None else 1 - len(keep) / rows)
            return output if keep is None else rows_of(output, keep)

    return JuiceboxGRPOTrainer


class ExperimentRewards:
    """The experiment's rewards as one TRL reward function: GRPO's answers are grouped back into
    their records (the processed record, found by the ``record_id`` column) as rollout samples and
    scored by :class:`~juicebox.rewards.CombinedReward`; a sample no reward could score gets None,
    which TRL leaves out of its group's baseline. Each named reward's mean goes to the curves."""

    __name__ = "rewards"

    def __init__(self, specs: list[dict], context, eos_token_id: int | None):
        from .rewards import CombinedReward

        self.reward = CombinedReward(specs, context)
        self.records: dict[str, dict] = {}
        self.eos = eos_token_id

    def applies(self, task: str | None) -> bool:
        """Whether one of the rewards scores answers of ``task``."""
        return any(reward.applies(task) for _, _, reward in self.reward.entries)

    def sample(self, index: int, completion, ids) -> dict:
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        if isinstance(text, list):  # content parts
            text = "".join(part.get("text", "") for part in text if part.get("type") == "text")
        ended = bool(ids) and ids[-1] == self.eos
        return {"index": index, "text": text, "n_tokens": len(ids), "finish_reason": "stop" if ended else "length"}

    def __call__(self, prompts, completions, completion_ids, record_id, log_metric=None, **_) -> list[float | None]:
        order: list[str] = []
        samples: dict[str, list[tuple[int, dict]]] = {}
        for row, (rid, completion, ids) in enumerate(zip(record_id, completions, completion_ids, strict=True)):
            if rid not in samples:
                order.append(rid)
                samples[rid] = []
            samples[rid].append((row, self.sample(len(samples[rid]), completion, ids)))
        records = [{**self.records[rid], "samples": [s for _, s in samples[rid]]} for rid in order]
        values: list[float | None] = [None] * len(completions)
        per_reward: dict[str, list[float]] = {}
        for record in self.reward.score_records(records):
            for (row, _), sample in zip(samples[record["id"]], record["samples"], strict=True):
                values[row] = sample["reward"]
                for name, value in sample["rewards"].items():
                    if value is not None:
                        per_reward.setdefault(name, []).append(value)
        if log_metric is not None:
            for name, scores in sorted(per_reward.items()):
                log_metric(f"rewards/{name}", sum(scores) / len(scores))
        return values

    def close(self) -> None:
        self.reward.close()


def grpo_records(data: str, options: GRPOOptions, reward: ExperimentRewards, seed: int) -> list[dict]:
    """The processed records GRPO samples for: of ``options.tasks`` (null: every task one of the
    rewards applies to), at most ``options.limit`` of them (a seeded sample, pool order kept, as the
    rollouts choose)."""
    from .rollouts import select_prompts

    records = read_jsonl(data)
    if options.tasks is None:
        records = [r for r in records if reward.applies(r.get("task"))]
    records, _ = select_prompts(records, options.tasks, options.limit, seed)
    if not records:
        raise ValueError(f"{data}: no processed record of the tasks GRPO trains on "
                         f"({options.tasks or 'those a reward applies to'})")
    return records


def grpo_rows(records: list[dict], vision: bool, system_prompt: str | None) -> list[dict]:
    """GRPO's dataset rows: the conversational ``prompt`` (for a vision-language model in content
    parts, with the record's image paths in ``images``) and ``record_id``, which the reward reads."""
    from .records import prompt_messages, record_images, vision_chat

    rows = []
    for record in records:
        messages = prompt_messages(record["prompt"], system_prompt)
        if vision:
            images = record_images(record)
            rows.append({"prompt": vision_chat(messages, len(images)), "images": images, "record_id": record["id"]})
        else:
            rows.append({"prompt": messages, "record_id": record["id"]})
    return rows


def grpo_config(options: GRPOOptions, output_dir: Path, seed: int, tracking: dict | None):
    """TRL's ``GRPOConfig`` from the options: the shared training keys (:func:`juicebox.train.trl_config`'s)
    and the algorithm's (:meth:`GRPOOptions.algorithm_settings`)."""
    from trl import GRPOConfig

    from .train import training_args

    algorithm = options.algorithm_settings()
    args = training_args(options, output_dir, seed, tracking)
    args.pop("max_length")
    if options.max_steps is not None:
        args["max_steps"] = options.max_steps
    server = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": options.vllm_server} \
        if options.vllm_server else {}
    return GRPOConfig(**args, num_generations=options.num_generations,
                      max_completion_length=options.max_completion_length, temperature=options.temperature,
                      top_p=options.top_p, beta=options.beta, scale_rewards=options.scale_rewards,
                      steps_per_generation=options.steps_per_generation, log_completions=False,
                      **algorithm, **server)


def train_grpo(data: str, model_path: str, out: str, metrics: str, options: GRPOOptions, rewards: list[dict],
               seed: int, tracking: dict | None = None, context=None) -> dict:
    """GRPO or GSPO of ``model_path`` on the prompts of ``data`` (processed records) with ``rewards``
    (the experiment's ``rewards.functions``); the trained policy (a LoRA adapter merged) goes to
    ``out`` as a full model; the curves to ``metrics`` and the trackers of ``tracking``.

    The summary: ``prompts``, ``algorithm``, ``parameters`` (lora or full), ``steps`` and
    ``train_loss``, and the mean reward of the first and the last logged step."""
    from .models import is_vision_language, load_processing, model_class, save_model, tokenizer_of
    from .rewards import RewardContext
    from .train import _train, log_at_checkpoints, lora_config, train_dataset

    vision = is_vision_language(model_path)
    processing = load_processing(model_path, padding_side="left", vision=vision)
    context = context or RewardContext(policy_model=model_path, base_model=model_path, seed=seed)
    reward = ExperimentRewards(rewards, context, tokenizer_of(processing).eos_token_id)
    records = grpo_records(data, options, reward, seed)
    reward.records = {r["id"]: r for r in records}
    rows = grpo_rows(records, vision, options.system_prompt)
    out_dir = Path(out)
    ckpt_dir = out_dir.with_name(out_dir.name + ".checkpoints")
    model = model_class(vision).from_pretrained(model_path)
    peft = lora_config(options.lora) if options.parameters == "lora" else None
    trainer = trainer_class(options.filter_groups)(
        model=model, reward_funcs=[reward], args=grpo_config(options, ckpt_dir, seed, tracking),
        train_dataset=train_dataset(rows, vision), processing_class=processing, peft_config=peft,
        callbacks=[log_at_checkpoints()])
    log.info("%s on %d prompts, %d answers each, %s parameters", options.algorithm, len(rows),
             options.num_generations, options.parameters)
    try:
        result = _train(trainer, ckpt_dir, Path(metrics), GRPO_COLUMNS)
    finally:
        reward.close()
    policy = trainer.model.merge_and_unload() if peft is not None else trainer.model
    if trainer.is_world_process_zero():
        save_model(policy, processing, out_dir)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    logged = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    return {"prompts": len(rows), "algorithm": options.algorithm, "parameters": options.parameters,
            "reward_first": logged[0] if logged else None, "reward_last": logged[-1] if logged else None, **result}
