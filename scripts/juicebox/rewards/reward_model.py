"""The ``reward_model`` reward: a sequence-classification reward model's logit for prompt + answer.

A sequence-classification model (``AutoModelForSequenceClassification``) reads text only: it
cannot score a record with images, and refuses one by name rather than score the answer as if
the image were not there. Image prompts are scored by ``dpo_implicit`` with vision-language
models, or by a multimodal ``judge``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import record_images
from ..spec import option
from .base import Reward, RewardContext, RewardOptions, Scores, prompt_messages, register, reward_name


def _free_pad_id(sequences: list[list[int]], preferred: list[int | None], vocab_size: int) -> int:
    """A pad id that occurs in none of ``sequences``: the first free one of ``preferred``, else the
    highest free id below ``vocab_size``."""
    used = {t for ids in sequences for t in ids}
    for candidate in preferred:
        if candidate is not None and candidate not in used:
            return candidate
    return next(t for t in range(vocab_size - 1, -1, -1) if t not in used)


@register("reward_model")
class RewardModel(Reward):
    """The logit of label ``label`` (default 0; for a single-label RM, its one logit) that an
    ``AutoModelForSequenceClassification`` at ``model`` gives to the conversation prompt +
    answer, rendered with the model's own chat template (user turn(s), then the assistant turn).

    Batches of ``batch_size`` are right-padded. Transformers reads each row's score at its last
    token that is not the pad token, so a sequence that itself ends with the pad token (an RM
    whose pad token is its EOS) would be read one token early: each batch is therefore padded
    with an id that occurs in none of its sequences. The model loads on the first ``score`` call.
    Text only: a record with images is refused (:meth:`refuse_images`).
    """

    runs_model = True

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """reward_model keys."""

        model: str = option(help="Path or hub id of an AutoModelForSequenceClassification reward model.")
        label: int = option(0, "The label whose logit is the reward.", minimum=0)
        batch_size: int = option(16, "Answers scored together.", minimum=1)
        dtype: str | None = option(None, "torch dtype of the model (null: the context's, as saved).")

    def __init__(self, options: Options, context: RewardContext | None = None) -> None:
        super().__init__(options, context)
        self.model, self.label, self.batch_size = options.model, options.label, options.batch_size
        self.dtype = options.dtype or self.context.dtype
        self._loaded = None

    def settings(self) -> dict:
        """Model, label, batching."""
        return {"model": self.model, "label": self.label, "batch_size": self.batch_size, "dtype": self.dtype}

    def _load(self):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if self._loaded is None:
            self.context.set_threads()
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            if not tokenizer.chat_template:
                raise ValueError(f"reward_model: the tokenizer of {self.model} has no chat template")
            model = AutoModelForSequenceClassification.from_pretrained(self.model, dtype=self.dtype)
            if self.label >= model.config.num_labels:
                raise ValueError(f"reward_model: label {self.label} but {self.model} has "
                                 f"{model.config.num_labels} label(s)")
            self._loaded = (tokenizer, model.to(self.context.torch_device()).eval())
        return self._loaded

    def render(self, record: dict, answer: str) -> str:
        """The conversation the reward model reads: the prompt's turns, then the answer."""
        tokenizer, _ = self._load()
        return tokenizer.apply_chat_template(prompt_messages(record) + [{"role": "assistant", "content": answer}],
                                             tokenize=False)

    def refuse_images(self, records: list[dict]) -> None:
        """Raise, naming the reward, the model and the record, when a record has images: a
        sequence-classification model reads text only and would score the answer without them."""
        record = next((r for r in records if record_images(r)), None)
        if record is not None:
            raise ValueError(
                f"reward {reward_name(self.options, self.type)!r} (reward_model): prompt {record.get('id')} has "
                f"{len(record_images(record))} image(s), but the reward model {self.model} is a text-only "
                "sequence classifier (AutoModelForSequenceClassification) and cannot see them; score image "
                "prompts with dpo_implicit (vision-language models) or a multimodal judge, drop the images, "
                "or limit this reward's `tasks:` to text tasks")

    def score_applicable(self, records: list[dict]) -> Scores:
        """The chosen logit of every sample, batched across prompts (longest first)."""
        import torch

        self.refuse_images(records)
        tokenizer, model = self._load()
        sequences = [tokenizer(self.render(record, sample.get("text") or ""), add_special_tokens=False)["input_ids"]
                     for record in records for sample in record.get("samples") or []]
        text_config = model.config.get_text_config()
        vocab_size = getattr(text_config, "vocab_size", None) or len(tokenizer)
        device = next(model.parameters()).device
        order = sorted(range(len(sequences)), key=lambda k: (-len(sequences[k]), k))
        values: list[float] = [0.0] * len(sequences)
        saved_pad = text_config.pad_token_id
        try:
            with torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    batch = [sequences[k] for k in order[start:start + self.batch_size]]
                    pad = _free_pad_id(batch, [tokenizer.pad_token_id, saved_pad, tokenizer.eos_token_id], vocab_size)
                    text_config.pad_token_id = pad
                    width = max(len(ids) for ids in batch)
                    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
                    attention = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, ids in enumerate(batch):
                        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                        attention[row, :len(ids)] = 1
                    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
                    for row, k in enumerate(order[start:start + self.batch_size]):
                        values[k] = float(logits[row, self.label].float())
        finally:
            text_config.pad_token_id = saved_pad
        flat = iter(zip(values, sequences))
        return [[(value, {"n_tokens": len(ids)}) for value, ids in (next(flat) for _ in record.get("samples") or [])]
                for record in records]

    def close(self) -> None:
        """Drop the model."""
        self._loaded = None
