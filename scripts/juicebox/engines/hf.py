"""The ``hf`` engine: in-process transformers generation, batched.

Prompts are rendered with the tokenizer's chat template, sorted by length (so a batch wastes
little on padding), left-padded and generated together with the KV cache; each prompt's n
answers come from ``num_return_sequences``. Each batch is seeded from the run's seed and the
ids in it, so the same shard gives the same answers on the same machine.
"""

from __future__ import annotations

import logging

from . import OnDone, Prompt, Sampling, register, stable_seed

log = logging.getLogger("juicebox")


@register("hf")
class HFEngine:
    """Generate with ``model.generate`` on batches of ``batch_size`` prompts (CPU or one GPU)."""

    def __init__(self, model: str, adapter: str | None, sampling: Sampling, batch_size: int = 32,
                 dtype: str = "auto", device: str | None = None, threads: int | None = None):
        import torch

        from ..models import load_causal_lm, load_tokenizer

        if threads:
            torch.set_num_threads(threads)
        self.model_path, self.adapter, self.sampling, self.batch_size = model, adapter, sampling, batch_size
        self.tokenizer = load_tokenizer(model, padding_side="left")
        self.model = load_causal_lm(model, adapter=adapter, dtype=dtype, device=device)
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

    def run(self, prompts: list[Prompt], on_done: OnDone) -> None:
        """Answer every prompt n times, calling ``on_done`` after each batch, prompt by prompt."""
        rendered = [(p, self.render(p)) for p in prompts]
        lengths = {p.id: len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for p, text in rendered}
        rendered.sort(key=lambda pt: (lengths[pt[0].id], pt[0].id))
        for start in range(0, len(rendered), self.batch_size):
            batch = rendered[start:start + self.batch_size]
            for prompt, samples in zip((p for p, _ in batch), self.generate([t for _, t in batch],
                                                                             [p.id for p, _ in batch])):
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
