"""The ``hf`` engine: in-process transformers generation, batched.

The model is loaded by :func:`..models.load_model`: a text model with its tokenizer, a
vision-language model (VLM) with its processor. Prompts are rendered with the chat template
(a prompt's images become image content parts, :func:`..records.with_image_parts`), sorted by
length in tokens (a VLM's image tokens included, so a batch wastes little on padding),
left-padded and generated together with the KV cache; a VLM gets each batch's images through
its processor. Each prompt is prefilled once and its KV cache repeated for its n answers (the
answers ``num_return_sequences`` gives, without computing the prompt n times). Each batch is
seeded from the run's seed and the ids in it, so the same shard gives the same answers on the
same machine. The batches are formed from the whole shard, also when a resumed run has only some
prompts left (``run``'s ``done``). A text model given a prompt with images refuses it by name
rather than answer without the images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Collection

from ..images import load_image
from ..models import is_vision_language, load_model, load_processing, tokenizer_of
from ..records import with_image_parts
from ..shards import pending_batches
from ..spec import option
from .base import EngineOptions, OnDone, Prompt, Sampling, check_sees_images, register, stable_seed

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


class PromptEncoder:
    """Prompts into model input for one model: a text model's tokenizer, or a VLM's processor.

    Shared by the ``hf`` engine and the rollouts' ``max_prompt_tokens`` filter, so both count a
    prompt's tokens alike: with a VLM, each image as the image tokens its processor expands it
    into. A text model's prompts go through exactly the calls they always went through.
    """

    def __init__(self, model: str, processing, vision: bool):
        self.model, self.processing, self.vision = str(model), processing, vision
        self.tokenizer = tokenizer_of(processing)

    @classmethod
    def load(cls, model: str) -> "PromptEncoder":
        """The encoder of the model at ``model`` (its processing class only, no weights)."""
        vision = is_vision_language(model)
        return cls(model, load_processing(model, padding_side="left", vision=vision), vision)

    def render(self, prompt: Prompt) -> str:
        """The prompt as the model sees it (chat template with the generation prompt), its images as
        image parts. A text model refuses a prompt with images, naming the model and the prompt."""
        check_sees_images(prompt, self.model, self.vision)
        return self.processing.apply_chat_template(with_image_parts(prompt.messages, len(prompt.images)),
                                                   tokenize=False, add_generation_prompt=True)

    def encode(self, texts: list[str], images: list[list[str]] | None = None):
        """Rendered prompts (and each one's images, for a VLM) as left-padded tensors on the CPU."""
        if not self.vision:
            return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        pictures = [[load_image(ref) for ref in refs] for refs in images or [[] for _ in texts]]
        return self.processing(text=texts, images=pictures if any(pictures) else None, return_tensors="pt",
                               padding=True, add_special_tokens=False)

    def length(self, prompt: Prompt, text: str | None = None) -> int:
        """Tokens of the rendered prompt (``text``, rendered here when not given), image tokens included."""
        text = self.render(prompt) if text is None else text
        return self.encode([text], [prompt.images])["input_ids"].shape[1]


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

        if threads:
            torch.set_num_threads(threads)
        self.model_path, self.adapter, self.sampling = model, adapter, sampling
        self.batch_size = options.batch_size
        loaded = load_model(model, adapter=adapter, dtype=options.dtype, device=options.device)
        self.model = loaded.model
        self.encoder = PromptEncoder(model, loaded.processing, loaded.vision)
        self.tokenizer = self.encoder.tokenizer
        self.eos_ids = self._eos_ids()
        # Models that compute multimodal (3D) rope positions at prefill keep them per batch row
        # (Qwen2-VL and its kin: ``get_rope_index``); they take the plain path (see _prefilled).
        self.shares_prefill = not any(hasattr(module, "get_rope_index") for module in self.model.modules())

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
        return ids | {self.tokenizer.eos_token_id}

    def provenance(self) -> dict:
        """What produced the samples: engine, model, adapter, batch size."""
        return {"type": "hf", "model": self.model_path, "adapter": self.adapter, "batch_size": self.batch_size}

    def render(self, prompt: Prompt) -> str:
        """The prompt as the model sees it (:meth:`PromptEncoder.render`)."""
        return self.encoder.render(prompt)

    def run(self, prompts: list[Prompt], on_done: OnDone, done: Collection[str] = ()) -> None:
        """Answer every prompt not in ``done`` n times, calling ``on_done`` after each batch, prompt by prompt.

        The batches are formed from all of ``prompts`` (sorted by length, then id), whatever
        ``done`` holds, and each is seeded from its ids: a batch holding a prompt not done is
        generated whole, as in a run never interrupted, and only its prompts not done are passed
        on. So a resumed shard gets the answers an uninterrupted one gets.
        """
        rendered = [(p, self.render(p)) for p in prompts]  # a text model refuses image prompts before any work
        lengths = {p.id: self.encoder.length(p, text) for p, text in rendered}
        rendered.sort(key=lambda pt: (lengths[pt[0].id], pt[0].id))
        for batch in pending_batches(rendered, self.batch_size, done, key=lambda pt: pt[0].id):
            answers = self.generate([t for _, t in batch], [p.id for p, _ in batch], [p.images for p, _ in batch])
            for (prompt, _), samples in zip(batch, answers):
                if prompt.id not in done:
                    on_done(prompt, samples)

    def generate(self, texts: list[str], ids: list[str], images: list[list[str]] | None = None) -> list[list[dict]]:
        """n samples for each rendered prompt of one batch (``images``: each prompt's, for a VLM)."""
        import torch

        s = self.sampling
        enc = self.encoder.encode(texts, images)
        # a VLM's pixel values in the model's dtype (BatchFeature.to casts floating tensors only)
        enc = enc.to(self.model.device, dtype=self.model.dtype) if self.encoder.vision else enc.to(self.model.device)
        n_return = 1 if s.greedy else s.n
        shared = self._prefilled(enc, n_return) if n_return > 1 and self.shares_prefill else None
        inputs, expand = (shared, 1) if shared else (dict(enc), n_return)
        kwargs = dict(max_new_tokens=s.max_tokens, num_return_sequences=expand,
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
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        results = []
        for i in range(len(texts)):
            rows = new[i * n_return:(i + 1) * n_return]
            samples = [self._sample(k, row) for k, row in enumerate(rows)]
            if s.greedy:
                samples = [{**samples[0], "index": k} for k in range(s.n)]
            results.append(samples)
        return results

    def _prefilled(self, enc, n: int) -> dict | None:
        """The batch with each prompt's KV cache computed once and repeated for its n rows (None
        for a model whose cache cannot be cut back and repeated: it prefills every row from then on).

        ``num_return_sequences`` repeats every prompt n times before the prefill, which then
        computes the same keys and values n times: with short answers most of the work (about
        half of it at 24 new tokens on a CPU, docs/results/rollouts.md). Here generate's own prefill (positions,
        images and all; one argmax token, discarded, draws no random numbers) fills the cache of
        the prompts once; it is cut back by the last prompt token, whose logits the sampling call
        computes, and repeated n times a row. The answers are the ones ``num_return_sequences``
        gives, bit for bit (tests compare them).
        """
        import torch

        with torch.inference_mode():
            cache = self.model.generate(**enc, max_new_tokens=1, do_sample=False, temperature=None, top_p=None,
                                        top_k=None, pad_token_id=self.tokenizer.pad_token_id,
                                        return_dict_in_generate=True).past_key_values
        try:
            cache.crop(-1)
            cache.batch_repeat_interleave(n)
        except (NotImplementedError, ValueError) as err:  # e.g. a static or sliding-window cache
            log.warning("%s: the prefill cannot be shared (%s); every answer row is prefilled", self.model_path, err)
            self.shares_prefill = False
            return None
        return {"input_ids": enc["input_ids"].repeat_interleave(n, dim=0),
                "attention_mask": enc["attention_mask"].repeat_interleave(n, dim=0), "past_key_values": cache}

    def _sample(self, index: int, tokens: list[int]) -> dict:
        """One answer: text up to the first end token, its token count and why it stopped."""
        end = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        kept = tokens if end is None else tokens[:end]
        return {"index": index, "text": self.tokenizer.decode(kept, skip_special_tokens=True).strip(),
                "n_tokens": len(kept), "finish_reason": "length" if end is None else "stop"}

    def close(self) -> None:
        """Nothing to release: the model goes with the process."""
