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

Both models read the prompt as the reward model's tokenizer renders it; their vocabularies must
be the same. The models are text-only causal LMs: a record's images are not shown to them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Literal

from ..spec import option
from . import Reward, RewardContext, RewardOptions, Scores, prompt_messages, register

log = logging.getLogger("juicebox")

VARIANTS = ("sum", "avg", "min", "last")
_SENTINEL = "JuiceboxSentinelAnswer"
_ADAPTER_OFF = object()  # marks a reference that is the reward model with its adapter disabled


def end_of_turn_ids(tokenizer) -> list[int]:
    """The token ids the chat template puts right after an assistant answer, up to and including
    the first special token (ChatML: ``<|im_end|>``); the EOS token if the template shows none."""
    conversation = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    if _SENTINEL in text:
        ids = tokenizer(text.split(_SENTINEL, 1)[1], add_special_tokens=False)["input_ids"]
        specials = set(tokenizer.all_special_ids)
        for k, token in enumerate(ids):
            if token in specials:
                return ids[:k + 1]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def answer_logprobs(model, tokenizer, messages_list: list[list[dict]], answers: list[str], batch_size: int = 16,
                    end_of_turn: bool | list[bool] = True) -> list[list[float]]:
    """Log-probability of each answer token given its prompt, one list per answer.

    Each prompt (chat messages) is rendered with ``tokenizer``'s chat template and the generation
    prompt; the answer is tokenised on its own and followed by the end-of-turn token(s)
    (:func:`end_of_turn_ids`) where ``end_of_turn`` is true (one flag for all, or one per answer).
    Sequences are sorted by length and run ``batch_size`` at a time, right-padded (the answer
    tokens' positions and causal attention are then the same as unpadded), under
    ``torch.inference_mode``; log-softmax is taken in float32.
    """
    import torch

    if len(messages_list) != len(answers):
        raise ValueError(f"answer_logprobs: {len(messages_list)} prompts but {len(answers)} answers")
    flags = [end_of_turn] * len(answers) if isinstance(end_of_turn, bool) else list(end_of_turn)
    if len(flags) != len(answers):
        raise ValueError(f"answer_logprobs: {len(flags)} end_of_turn flags for {len(answers)} answers")
    if not tokenizer.chat_template:
        raise ValueError(f"answer_logprobs: the tokenizer {tokenizer.name_or_path!r} has no chat template")
    eot = end_of_turn_ids(tokenizer)
    sequences = []
    for messages, answer, flag in zip(messages_list, answers, flags):
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + (eot if flag else [])
        if not prompt_ids:
            raise ValueError("answer_logprobs: a prompt renders to no tokens, so its first answer token has no context")
        sequences.append((prompt_ids + answer_ids, len(prompt_ids)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda k: (-len(sequences[k][0]), k))
    result: list[list[float]] = [[] for _ in sequences]
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(sequences[k][0]) for k in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, k in enumerate(batch):
                ids = sequences[k][0]
                input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention[row, :len(ids)] = 1
            input_ids, attention = input_ids.to(device), attention.to(device)
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
            for row, k in enumerate(batch):
                ids, p = sequences[k]
                n = len(ids) - p
                if n == 0:
                    continue
                # Token t is predicted by the logits at position t - 1.
                logp = torch.log_softmax(logits[row, p - 1:p - 1 + n].float(), dim=-1)
                result[k] = logp.gather(-1, input_ids[row, p:p + n].unsqueeze(-1)).squeeze(-1).tolist()
    return result


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
        from ..models import load_causal_lm, load_tokenizer

        if self._loaded is None:
            self.context.set_threads()
            device = self.context.torch_device()
            tokenizer = load_tokenizer(self.reward_model, padding_side="right")
            if load_tokenizer(self.ref_model).get_vocab() != tokenizer.get_vocab():
                raise ValueError(f"dpo_implicit: {self.reward_model} and {self.ref_model} have different "
                                 "vocabularies; the implicit reward compares the same tokens under both")
            reward = load_causal_lm(self.reward_model, adapter=self.adapter, dtype=self.dtype, device=device)
            if _same_path(self.reward_model, self.ref_model) and not self.adapter:
                log.warning("dpo_implicit: reward and reference model are both %s: every reward is 0",
                            self.reward_model)
                ref = None
            elif _same_path(self.reward_model, self.ref_model):
                # The usual case here: a LoRA adapter over the model it was trained from. The
                # reference is the same weights with the adapter switched off: one copy in memory.
                ref = _ADAPTER_OFF
            else:
                ref = load_causal_lm(self.ref_model, dtype=self.dtype, device=device)
            self._loaded = (tokenizer, reward, ref)
        return self._loaded

    def score_applicable(self, records: list[dict]) -> Scores:
        """Log-probs of every answer under both models, batched across prompts, then the four reductions."""
        tokenizer, reward, ref = self._load()
        messages, answers, flags = [], [], []
        for record in records:
            for sample in record.get("samples") or []:
                messages.append(prompt_messages(record))
                answers.append(sample.get("text") or "")
                flags.append(bool(self.include_eos) and sample.get("finish_reason") != "length")
        lp_reward = answer_logprobs(reward, tokenizer, messages, answers, self.batch_size, flags)
        if ref is None:
            lp_ref = lp_reward
        elif ref is _ADAPTER_OFF:
            with reward.disable_adapter():
                lp_ref = answer_logprobs(reward, tokenizer, messages, answers, self.batch_size, flags)
        else:
            lp_ref = answer_logprobs(ref, tokenizer, messages, answers, self.batch_size, flags)
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
