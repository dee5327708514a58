"""The ``hf`` engine: in-process transformers generation, batched.

Prompts are rendered with the tokenizer's chat template, sorted by length (so a batch wastes
little on padding), left-padded and generated together with the KV cache; each prompt's n
answers come from ``num_return_sequences``. Each batch is seeded from the run's seed and the
ids in it, so the same shard gives the same answers on the same machine. The batches are formed
from the whole shard, also when a resumed run has only some prompts left (``run``'s ``done``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Collection

from ..spec import option
from . import EngineOptions, OnDone, Prompt, Sampling, register, stable_seed

log = logging.getLogger("juicebox")


class PresenceFrequencyPenalty:
    """A logits processor with OpenAI's (and vLLM's) presence and frequency penalties.

    For each row, every token already generated in that row's answer (positions from
    ``prompt_length`` on; the prompt does not count) has ``presence`` subtracted from its logit
    once, and ``frequency`` once per time it occurs. Applied before temperature, top-k and top-p
    (transformers runs the processors it is given before its sampling warpers), as vLLM does.
    With left padding every prompt of a batch ends at the same position, ``input_ids.shape[1]``.
    """

    def __init__(self, prompt_length: int, presence: float = 0.0, frequency: float = 0.0):
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


@register("hf")
class HFEngine:
    """Generate with ``model.generate`` on batches of ``batch_size`` prompts (CPU or one GPU)."""

    @dataclass(frozen=True)
    class Options(EngineOptions):
        """hf keys."""

        batch_size: int = option(32, "Prompts generated together (left-padded, sorted by length).", minimum=1)
        dtype: str = option("auto", "torch dtype the model is loaded in: auto (as saved), float32, bfloat16, float16.")
        device: str | None = option(None, "cpu, cuda, cuda:1, ... (null: CUDA when available, else CPU).")

        def gpus(self) -> int:
            """One GPU, none when the device is the CPU."""
            return 0 if str(self.device or "").startswith("cpu") else 1

    def __init__(self, options: Options, *, model: str, adapter: str | None, sampling: Sampling,
                 threads: int | None = None, log_dir: str | None = None):
        import torch

        from ..models import load_causal_lm, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_path, self.adapter, self.sampling = model, adapter, sampling
        self.batch_size = options.batch_size
        self.tokenizer = load_tokenizer(model, padding_side="left")
        self.model = load_causal_lm(model, adapter=adapter, dtype=options.dtype, device=options.device)
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        return ids | {self.tokenizer.eos_token_id}

    def provenance(self) -> dict:
        """What produced the samples: engine, model, adapter, batch size."""
        return {"type": "hf", "model": self.model_path, "adapter": self.adapter, "batch_size": self.batch_size}

    def render(self, prompt: Prompt) -> str:
        """The prompt as the model sees it (chat template with the generation prompt)."""
        return self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)

    def run(self, prompts: list[Prompt], on_done: OnDone, done: Collection[str] = ()) -> None:
        """Answer every prompt not in ``done`` n times, calling ``on_done`` after each batch, prompt by prompt.

        The batches are formed from all of ``prompts`` (sorted by length, then id), whatever
        ``done`` holds, and each is seeded from its ids: a batch holding a prompt not done is
        generated whole, as in a run never interrupted, and only its prompts not done are passed
        on. So a resumed shard gets the answers an uninterrupted one gets.
        """
        from ..shards import pending_batches

        rendered = [(p, self.render(p)) for p in prompts]
        lengths = {p.id: len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for p, text in rendered}
        rendered.sort(key=lambda pt: (lengths[pt[0].id], pt[0].id))
        for batch in pending_batches(rendered, self.batch_size, done, key=lambda pt: pt[0].id):
            for prompt, samples in zip((p for p, _ in batch), self.generate([t for _, t in batch],
                                                                             [p.id for p, _ in batch])):
                if prompt.id not in done:
                    on_done(prompt, samples)

    def generate(self, texts: list[str], ids: list[str]) -> list[list[dict]]:
        """n samples for each rendered prompt of one batch."""
        import torch

        s = self.sampling
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
        n_return = 1 if s.greedy else s.n
        kwargs = dict(max_new_tokens=s.max_tokens, num_return_sequences=n_return,
                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=sorted(self.eos_ids),
                      repetition_penalty=s.repetition_penalty)
        if s.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k or None)
        if s.presence_penalty or s.frequency_penalty:  # also in argmax decoding, as on a server
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([PresenceFrequencyPenalty(
                enc["input_ids"].shape[1], s.presence_penalty, s.frequency_penalty)])
        torch.manual_seed(stable_seed(s.seed, *ids))
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        results = []
        for i in range(len(texts)):
            rows = new[i * n_return:(i + 1) * n_return]
            samples = [self._sample(k, row) for k, row in enumerate(rows)]
            if s.greedy:
                samples = [{**samples[0], "index": k} for k in range(s.n)]
            results.append(samples)
        return results

    def _sample(self, index: int, tokens: list[int]) -> dict:
        """One answer: text up to the first end token, its token count and why it stopped."""
        end = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        return {"index": index, "text": self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                "n_tokens": len(kept), "finish_reason": "length" if end is None else "stop"}

    def close(self) -> None:
        """Nothing to release: the model goes with the process."""
