"""Rollout engines: a registry from ``type:`` to a class that answers prompts n times.

Every engine takes the same :class:`Sampling` and answers a list of :class:`Prompt` through
``run(prompts, on_done, done=())``, calling ``on_done(prompt, samples)`` as soon as a prompt's n
samples are finished, so the caller can append them to its shard file and a killed job keeps
them. A resumed shard passes all its prompts and the ids already ``done``: the engine answers
only the others, but whatever it batches or seeds together is formed from the whole list, so
every answer is the one an uninterrupted run gives.

* ``hf`` (:mod:`.hf`): in-process transformers generation, batched with left padding and the
  KV cache, for CPU and small GPUs.
* ``openai`` (:mod:`.openai`): an async client over OpenAI-compatible endpoints, given or launched
  (``vllm serve`` on GPUs, ``transformers serve`` on CPU; :mod:`.servers`).

Both answer prompts with images (``Prompt.images``) with a vision-language model; a text-only
model refuses them by name (:func:`check_sees_images`) rather than answer without the images.
"""

from . import hf, openai  # noqa: F401  (each engine module registers its engine)
from .base import (ENGINES, NEUTRAL_SAMPLING, PRESETS, EngineOptions, OnDone, Prompt, Sampling, check_sees_images,
                   make_engine, register, stable_seed)

__all__ = ["ENGINES", "NEUTRAL_SAMPLING", "PRESETS", "EngineOptions", "OnDone", "Prompt", "Sampling",
           "check_sees_images", "make_engine", "register", "stable_seed"]
