"""The ``dpo_implicit`` reward: RLAIF-V's self-feedback, the DPO implicit reward of each answer.

A DPO-trained model π and the model it was trained from π_ref define a reward for every answer
token, β·(log π(token) − log π_ref(token)). RLAIF-V's data engine scores answers with it,
summed (``sum``), averaged (``avg``), at the worst token (``min``) or at the last token only
(``last``, the outcome-reward view).

What is scored: the prompt rendered with the reward model's chat template and the generation
prompt, then the answer text re-tokenised (rollouts keep text, not token ids), then the chat
template's end-of-turn token(s) (``<|im_end|>`` for ChatML). Every one of these answer tokens
counts, the end-of-turn included: it is the model's decision to stop, TRL's DPOTrainer trains on
it too (it appends EOS to every completion), and RLAIF-V counts the answer's label tokens with
the closing token. A sample cut off by the length limit (``finish_reason: length``) never chose
to stop, so it gets no end-of-turn token; ``include_eos: false`` leaves it off for all samples.

Images: a vision-language model sees the record's images, as in RLAIF-V, where both models
score the answer given the image. The prompt's messages get the images as content parts
(:func:`~juicebox.records.with_image_parts`), the reward model's processor renders them with its
chat template and expands each image placeholder into the image's tokens, and the answer tokens
follow; only the answer positions are scored (prompt and image positions are context). A record
without images is scored from token ids exactly as with a text-only model. A text-only model
cannot see images, so a record with images is refused, naming the record and the model, rather
than scored as if it had none.

Both models read the prompt as the reward model's tokenizer or processor renders it; their
vocabularies must be the same.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

from ..images import load_image
from ..models import is_vision_language, load_model, load_tokenizer, tokenizer_of
from ..records import record_images, with_image_parts
from ..spec import option
from .base import Reward, RewardContext, RewardOptions, Scores, prompt_messages, register, reward_name

log = logging.getLogger("juicebox")

VARIANTS = ("sum", "avg", "min", "last")
_SENTINEL = "JuiceboxSentinelAnswer"
_ADAPTER_OFF = object()  # marks a reference that is the reward model with its adapter disabled


def end_of_turn_ids(processing) -> list[int]:
    """The token ids the chat template puts right after an assistant answer, up to and including
    the first special token (ChatML: ``<|im_end|>``); the EOS token if the template shows none.
    ``processing`` is a tokenizer or a processor (whose chat template is then the one used)."""
    tokenizer = tokenizer_of(processing)
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}]
    text = processing.apply_chat_template(conversation, tokenize=False)
    if _SENTINEL in text:
        ids = tokenizer(text.split(_SENTINEL, 1)[1], add_special_tokens=False)["input_ids"]
        specials = set(tokenizer.all_special_ids)
        for k, token in enumerate(ids):
            if token in specials:
                return ids[:k + 1]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def answer_logprobs(model, processing, messages_list: list[list[dict]], answers: list[str], batch_size: int = 16,
                    end_of_turn: bool | list[bool] = True,
                    images: list[list[str]] | None = None) -> list[list[float]]:
    """Log-probability of each answer token given its prompt (and images), one list per answer.

    ``processing`` is the model's tokenizer, or its processor for a vision-language model. Each
    prompt (chat messages; with its images as content parts, :func:`with_image_parts`) is rendered
    with the chat template and the generation prompt; the answer is tokenised on its own and
    followed by the end-of-turn token(s) (:func:`end_of_turn_ids`) where ``end_of_turn`` is true
    (one flag for all, or one per answer). ``images`` holds each answer's image references (file
    paths or data: URIs; None: no images). Sequences are sorted by length and run ``batch_size``
    at a time (prompts with images and prompts without in separate batches), right-padded (the
    answer tokens' positions and causal attention are then the same as unpadded), under
    ``torch.inference_mode``; log-softmax is taken in float32. Only answer positions are read.
    """
    import torch

    tokenizer = tokenizer_of(processing)
    if len(messages_list) != len(answers):
        raise ValueError(f"answer_logprobs: {len(messages_list)} prompts but {len(answers)} answers")
    flags = [end_of_turn] * len(answers) if isinstance(end_of_turn, bool) else list(end_of_turn)
    if len(flags) != len(answers):
        raise ValueError(f"answer_logprobs: {len(flags)} end_of_turn flags for {len(answers)} answers")
    refs = [list(r or []) for r in images] if images is not None else [[] for _ in answers]
    if len(refs) != len(answers):
        raise ValueError(f"answer_logprobs: {len(refs)} image lists for {len(answers)} answers")
    if any(refs) and getattr(processing, "image_processor", None) is None:
        raise ValueError(f"answer_logprobs: images given but {tokenizer.name_or_path!r} has a tokenizer, not a "
                         "processor: a text-only model cannot see them")
    if not getattr(processing, "chat_template", None):
        raise ValueError(f"answer_logprobs: the tokenizer {tokenizer.name_or_path!r} has no chat template")
    eot = end_of_turn_ids(processing)
    prompts, answer_ids = [], []
    for messages, answer, flag, own in zip(messages_list, answers, flags, refs):
        prompts.append(processing.apply_chat_template(with_image_parts(messages, len(own)), tokenize=False,
                                                      add_generation_prompt=True))
        answer_ids.append(tokenizer(answer, add_special_tokens=False)["input_ids"] + (eot if flag else []))
    # The text length orders the batches (an image's tokens are only known once processed).
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) + len(a) for p, a in zip(prompts, answer_ids)]
    order = sorted(range(len(prompts)), key=lambda k: (bool(refs[k]), -lengths[k], k))
    device = next(model.parameters()).device
    result: list[list[float]] = [[] for _ in prompts]
    with torch.inference_mode():
        for batch in _batches(order, batch_size, key=lambda k: bool(refs[k])):
            inputs, prompt_lengths = _batch_inputs(processing, [prompts[k] for k in batch],
                                                   [answer_ids[k] for k in batch], [refs[k] for k in batch])
            logits = model(**_on(inputs, device, model.dtype), use_cache=False).logits
            for row, (k, p) in enumerate(zip(batch, prompt_lengths)):
                n = len(answer_ids[k])
                if n == 0:
                    continue
                # Token t is predicted by the logits at position t - 1.
                logp = torch.log_softmax(logits[row, p - 1:p - 1 + n].float(), dim=-1)
                result[k] = logp.gather(-1, inputs["input_ids"][row, p:p + n].unsqueeze(-1).to(logp.device)
                                        ).squeeze(-1).tolist()
    return result


def _batches(order: list[int], size: int, key) -> list[list[int]]:
    """``order`` cut into runs of at most ``size`` positions with the same ``key``."""
    batches: list[list[int]] = []
    for k in order:
        if batches and len(batches[-1]) < size and key(batches[-1][0]) == key(k):
            batches[-1].append(k)
        else:
            batches.append([k])
    return batches


def _batch_inputs(processing, prompts: list[str], answers: list[list[int]], images: list[list[str]]):
    """The model inputs of one batch and each row's prompt length: prompt tokens, then answer
    tokens, right-padded.

    Text prompts are tokenised as they are. Prompts with images go through the processor with
    their images, which expands each image placeholder into the image's tokens (so a prompt's
    length is read after processing) and gives the image tensors (``pixel_values``, and whatever
    else the model takes, e.g. ``image_grid_thw``), passed on as they are; per-token tensors
    beside ``input_ids`` (e.g. Gemma 3's ``token_type_ids``, which mark image tokens) are kept for
    the prompt and 0 (text) for the answer and the padding.
    """
    import torch

    tokenizer = tokenizer_of(processing)
    extras, per_token = {}, {}
    if any(images):
        enc = processing(text=prompts, images=[[load_image(ref) for ref in refs] for refs in images],
                         padding=True, add_special_tokens=False, return_tensors="pt")
        keep = enc["attention_mask"].bool()
        rows = [enc["input_ids"][row][keep[row]].tolist() for row in range(len(prompts))]
        for name, value in enc.items():
            if name in ("input_ids", "attention_mask"):
                continue
            if (isinstance(value, torch.Tensor) and not value.is_floating_point()
                    and value.shape == enc["input_ids"].shape):
                per_token[name] = [value[row][keep[row]] for row in range(len(prompts))]
            else:
                extras[name] = value
    else:
        rows = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    if not all(rows):
        raise ValueError("answer_logprobs: a prompt renders to no tokens, so its first answer token has no context")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    width = max(len(ids) + len(answer) for ids, answer in zip(rows, answers))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, answer) in enumerate(zip(rows, answers)):
        input_ids[row, :len(ids) + len(answer)] = torch.tensor(ids + answer, dtype=torch.long)
        attention[row, :len(ids) + len(answer)] = 1
    for name, values in per_token.items():
        full = torch.zeros((len(rows), width), dtype=values[0].dtype)
        for row, value in enumerate(values):
            full[row, :len(value)] = value
        extras[name] = full
    return {"input_ids": input_ids, "attention_mask": attention, **extras}, [len(ids) for ids in rows]


def _on(inputs: dict, device, dtype) -> dict:
    """Model inputs on ``device``, floating tensors (pixel values) in the model's ``dtype``."""
    import torch

    return {name: (value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device))
            if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}


def _same_path(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b) if os.path.exists(a) and os.path.exists(b) else a == b


@register("dpo_implicit")
class DPOImplicit(Reward):
    """β·(log π_reward − log π_ref) over the answer tokens, reduced by ``variant`` (sum/avg/min/last).

    ``reward_model`` (default: the policy model, with the policy adapter) with an optional PEFT
    ``adapter``, against ``ref_model`` (default: the base model). When the reference is the
    reward model's own base (same path, adapter given), it is that model with the adapter
    disabled, not a second copy. ``beta`` (0.1) scales the
    per-token difference once. Details hold all four variants (``rank_keys``, so pairing can rank
    by several), the token count and each model's summed log-probability. An answer with no
    tokens to score gets None. Models load on the first ``score`` call and stay loaded.
    Vision-language models see each record's images; a record with images is refused when either
    model is text-only (see the module doc).
    """

    rank_keys = VARIANTS

    runs_model = True

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """dpo_implicit keys."""

        reward_model: str | None = option(None, "The reward model (null: the policy model, with the policy adapter).")
        adapter: str | None = option(None, "A PEFT adapter on the reward model.")
        ref_model: str | None = option(None, "The reference model (null: the base model).")
        beta: float = option(0.1, "Scales the per-token log-probability difference.", exclusive_minimum=0)
        variant: Literal["sum", "avg", "min", "last"] = option("sum", "How the per-token values are reduced.")
        batch_size: int = option(16, "Answers scored together.", minimum=1)
        include_eos: bool = option(True, "Score the end-of-turn token after the answer too.")
        dtype: str | None = option(None, "torch dtype of the models (null: the context's, as saved).")

    def __init__(self, options: Options, context: RewardContext | None = None) -> None:
        super().__init__(options, context)
        reward_model, adapter, ref_model = options.reward_model, options.adapter, options.ref_model
        beta, variant, batch_size = options.beta, options.variant, options.batch_size
        include_eos, dtype = options.include_eos, options.dtype
        if reward_model is None:
            reward_model = self.context.policy_model
            adapter = adapter if adapter is not None else self.context.policy_adapter
        ref_model = ref_model or self.context.base_model
        if not reward_model or not ref_model:
            raise ValueError("dpo_implicit needs a reward model and a reference model: set `reward_model:` and "
                             "`ref_model:` or run it with the policy and base models in its context")
        self.reward_model, self.adapter, self.ref_model = str(reward_model), adapter, str(ref_model)
        self.beta, self.variant, self.batch_size = float(beta), variant, batch_size
        self.include_eos, self.dtype = include_eos, dtype or self.context.dtype
        self._loaded = None

    def settings(self) -> dict:
        """Models, β, variant, batching and end-of-turn handling."""
        return {"reward_model": self.reward_model, "adapter": self.adapter, "ref_model": self.ref_model,
                "beta": self.beta, "variant": self.variant, "batch_size": self.batch_size,
                "include_eos": self.include_eos, "dtype": self.dtype}

    def _load(self):
        """(processing, reward model, reference), loaded once; the reference is None when it is the
        reward model itself, ``_ADAPTER_OFF`` when it is the reward model with its adapter disabled."""
        if self._loaded is None:
            self.context.set_threads()
            device = self.context.torch_device()
            if load_tokenizer(self.ref_model).get_vocab() != load_tokenizer(self.reward_model).get_vocab():
                raise ValueError(f"dpo_implicit: {self.reward_model} and {self.ref_model} have different "
                                 "vocabularies; the implicit reward compares the same tokens under both")
            reward = load_model(self.reward_model, adapter=self.adapter, dtype=self.dtype, device=device,
                                padding_side="right")
            if _same_path(self.reward_model, self.ref_model) and not self.adapter:
                log.warning("dpo_implicit: reward and reference model are both %s: every reward is 0",
                            self.reward_model)
                ref = None
            elif _same_path(self.reward_model, self.ref_model):
                # The usual case here: a LoRA adapter over the model it was trained from. The
                # reference is the same weights with the adapter switched off: one copy in memory.
                ref = _ADAPTER_OFF
            else:
                ref = load_model(self.ref_model, dtype=self.dtype, device=device, padding_side="right").model
            self._loaded = (reward.processing, reward.model, ref)
        return self._loaded

    def _check_images(self, records: list[dict]) -> None:
        """Refuse a record with images when either model is text-only (it would score the answer
        without the image it is about); read from the models' configs, before loading them."""
        record = next((r for r in records if record_images(r)), None)
        if record is None:
            return
        blind = [model for model in dict.fromkeys((self.reward_model, self.ref_model)) if not is_vision_language(model)]
        if blind:
            raise ValueError(
                f"reward {reward_name(self.options, self.type)!r} (dpo_implicit): prompt {record.get('id')} has "
                f"{len(record_images(record))} image(s) but model {blind[0]} is text-only and cannot see them; use "
                "vision-language reward and reference models, drop the images, or limit this reward's `tasks:` "
                "to text tasks")

    def score_applicable(self, records: list[dict]) -> Scores:
        """Log-probs of every answer under both models (with the record's images), batched across
        prompts, then the four reductions."""
        self._check_images(records)
        processing, reward, ref = self._load()
        messages, images, answers, flags = [], [], [], []
        for record in records:
            try:
                record_messages = with_image_parts(prompt_messages(record), len(record_images(record)))
            except ValueError as err:
                raise ValueError(f"dpo_implicit: prompt {record.get('id')}: {err}") from err
            for sample in record.get("samples") or []:
                messages.append(record_messages)
                images.append(record_images(record))
                answers.append(sample.get("text") or "")
                flags.append(bool(self.include_eos) and sample.get("finish_reason") != "length")

        def logprobs(model):
            return answer_logprobs(model, processing, messages, answers, self.batch_size, flags, images)

        lp_reward = logprobs(reward)
        if ref is None:
            lp_ref = lp_reward
        elif ref is _ADAPTER_OFF:
            with reward.disable_adapter():
                lp_ref = logprobs(reward)
        else:
            lp_ref = logprobs(ref)
        flat = iter(zip(lp_reward, lp_ref))
        out: Scores = []
        for record in records:
            out.append([self._reduce(*next(flat)) for _ in record.get("samples") or []])
        return out

    def _reduce(self, lp_reward: list[float], lp_ref: list[float]) -> tuple[float | None, dict]:
        if not lp_reward:
            return None, {"reason": "the answer has no tokens to score"}
        diff = [a - b for a, b in zip(lp_reward, lp_ref)]
        # β is applied once, to every variant alike. Upstream RLAIF-V's `avg` multiplies the
        # per-token difference by β and the mean by β again (β² overall), which puts `avg` on
        # another scale than `sum` for no stated reason.
        values = {"sum": self.beta * sum(diff), "avg": self.beta * sum(diff) / len(diff),
                  "min": self.beta * min(diff), "last": self.beta * diff[-1]}
        details = {**values, "n_tokens": len(diff), "logp_reward": sum(lp_reward), "logp_ref": sum(lp_ref)}
        return values[self.variant], details

    def close(self) -> None:
        """Drop the models."""
        self._loaded = None
