"""Rollout engines: a registry from ``type:`` to a class that answers prompts n times.

Every engine takes the same :class:`Sampling` and answers a list of :class:`Prompt` through
``run(prompts, on_done)``, calling ``on_done(prompt, samples)`` as soon as a prompt's n samples
are finished, so the caller can append them to its shard file and a killed job keeps them.

* ``hf`` (:mod:`.hf`): in-process transformers generation, batched with left padding and the
  KV cache, for CPU and small GPUs.
* ``openai`` (:mod:`.openai`): an async client over OpenAI-compatible endpoints, given or launched
  (``vllm serve`` on GPUs, ``transformers serve`` on CPU; :mod:`.servers`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from ..registry import Registry

ENGINES = Registry("engine")
register = ENGINES.register

# Sampling presets, as in the DeepVision toolkit: the generation_config values the model
# families publish (Qwen2.5-Instruct, Qwen3 thinking mode, Xiaomi MiMo).
PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0},
    "qwen_ins": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
    "qwen_think": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0},
    "mimo": {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "repetition_penalty": 1.0},
}


@dataclass(frozen=True)
class Sampling:
    """How answers are drawn: a preset's values overridden by explicit keys."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_tokens: int = 64
    seed: int = 0
    preset: str = "custom"

    @classmethod
    def from_config(cls, cfg: dict, seed: int) -> "Sampling":
        """``{"preset": "qwen_ins", "n": 8, "temperature": 1.0, "max_tokens": 32}`` → Sampling."""
        preset = cfg.get("preset", "custom")
        if preset != "custom" and preset not in PRESETS:
            raise ValueError(f"unknown sampling preset {preset!r}; known: {', '.join(PRESETS)} or custom")
        values = {**PRESETS.get(preset, {}), **{k: v for k, v in cfg.items() if k != "preset"}}
        return cls(preset=preset, seed=seed, **values)

    @property
    def greedy(self) -> bool:
        """Temperature 0 means argmax decoding: one answer repeated n times."""
        return self.temperature <= 0.0

    def with_n(self, n: int) -> "Sampling":
        """The same sampling with another number of answers per prompt."""
        return replace(self, n=n)

    def to_dict(self) -> dict:
        """Plain dict for provenance."""
        return asdict(self)


@dataclass
class Prompt:
    """One prompt to answer: its id, chat messages and images (paths)."""

    id: str
    messages: list[dict]
    images: list[str] = field(default_factory=list)


def to_messages(prompt: str | list[dict], system: str | None = None) -> list[dict]:
    """A canonical prompt (text or chat messages) as chat messages, with an optional system turn."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any values, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


OnDone = Callable[[Prompt, list[dict]], None]


def job_engine_config(cfg: dict, threads: int, server_logs: str) -> dict:
    """An engine config for one job: ``hf`` uses the job's threads, launched servers log under the job."""
    out = dict(cfg)
    if out.get("type", "hf") == "hf":
        out.setdefault("threads", threads)
    else:
        out.setdefault("log_dir", server_logs)
    return out


def make_engine(cfg: dict, model: str, adapter: str | None, sampling: Sampling):
    """Build the engine named by ``cfg["type"]`` with the rest of ``cfg`` as its options."""
    from . import hf, openai  # noqa: F401  (registers the engines)

    options = {k: v for k, v in cfg.items() if k != "type"}
    return ENGINES.lookup(cfg.get("type", "hf"))(model=model, adapter=adapter, sampling=sampling, **options)
