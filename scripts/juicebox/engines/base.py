"""What every rollout engine shares: the ``ENGINES`` registry, :class:`Sampling` and its presets,
:class:`Prompt`, the base of every engine's options (:class:`EngineOptions`) and :func:`make_engine`.

The engines themselves are modules of this package (:mod:`.hf`, :mod:`.openai`), registered when
:mod:`juicebox.engines` is imported.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from ..registry import Registry
from ..spec import Options, Part

ENGINES = Registry("engine", default="hf")
register = ENGINES.register


class EngineBlock(Part):
    """A config block naming an engine (``rollouts.engine``, ``eval.engine``, a writer model's)."""

    schema_name = "engine"
    about = ("How answers are generated: {type: hf | openai, ...the engine's keys} (docs/config.md, \"Engines\").")

# Sampling presets. The first four are the DeepVision-103k toolkit's table (its evaluation
# scripts' ``--hyperparam``), value for value:
#
#   preset      temperature  top_p  top_k  repetition_penalty  presence_penalty
#   qwen_ins    0.7          0.8    20     1.0                 1.5
#   qwen_think  1.0          0.95   20     1.0                 -
#   mimo        0.3          0.95   -      -                   -
#   greedy      0.01         -      -      -                   -
#
# A field the table leaves unspecified ("-") is neutral here, our Sampling default: top_p 1.0,
# top_k 0 (off), repetition_penalty 1.0, presence_penalty and frequency_penalty 0.0 (off).
# ``greedy`` is sampling at a very low temperature, as in the toolkit: its n answers are drawn
# (and may differ); temperature 0 (preset ``argmax``, or ``custom``'s default) is argmax decoding.
# The other presets keep the values ours had before, under names that say where they come from.
NEUTRAL_SAMPLING: dict[str, Any] = {"top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0,
                                    "presence_penalty": 0.0, "frequency_penalty": 0.0}
PRESETS: dict[str, dict[str, Any]] = {
    "greedy": {**NEUTRAL_SAMPLING, "temperature": 0.01},
    "qwen_ins": {**NEUTRAL_SAMPLING, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0,
                 "presence_penalty": 1.5},
    "qwen_think": {**NEUTRAL_SAMPLING, "temperature": 1.0, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0},
    "mimo": {**NEUTRAL_SAMPLING, "temperature": 0.3, "top_p": 0.95},
    # argmax decoding: one answer per prompt, repeated n times (our earlier ``greedy``)
    "argmax": {**NEUTRAL_SAMPLING, "temperature": 0.0},
    # Qwen2.5-Instruct's generation_config.json (our earlier ``qwen_ins``)
    "qwen2.5_generation_config": {**NEUTRAL_SAMPLING, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                                  "repetition_penalty": 1.05},
    # Qwen3's model card for thinking mode (our earlier ``qwen_think``)
    "qwen3_thinking_card": {**NEUTRAL_SAMPLING, "temperature": 0.6, "top_p": 0.95, "top_k": 20},
}


@dataclass(frozen=True)
class Sampling:
    """How answers are drawn: a preset's values overridden by explicit keys."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    # OpenAI semantics: subtracted from the logit of every token already generated in this answer
    # (the prompt does not count), presence once, frequency once per occurrence. 0 = off.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
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
        """Temperature 0 means argmax decoding: one answer repeated n times. Any temperature above 0
        samples, however low (the ``greedy`` preset's 0.01 draws its n answers)."""
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


def check_sees_images(prompt: Prompt, model: str, vision: bool) -> None:
    """Refuse a prompt with images for a text-only model, naming both: answering it without the
    images would pass for an answer to the prompt."""
    if prompt.images and not vision:
        raise ValueError(f"prompt {prompt.id} has {len(prompt.images)} image(s), but model {model} is a text-only "
                         "model: use a vision-language model for prompts with images, or leave their task out "
                         "(rollouts.tasks)")


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any values, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


OnDone = Callable[[Prompt, list[dict]], None]


@dataclass(frozen=True)
class EngineOptions(Options):
    """Base of every engine's options: what a job running the engine asks a cluster for."""

    def gpus(self) -> int:
        """GPUs one job running this engine needs."""
        raise NotImplementedError

    def conda_env(self, cpu_env: str) -> str:
        """Conda env of a job running this engine (``cpu_env`` unless it needs its own)."""
        return cpu_env

    def check_sampling(self, sampling: "Sampling") -> None:
        """Raise ValueError naming the sampling settings this engine cannot honour (none by default)."""


def make_engine(cfg: dict, model: str, adapter: str | None, sampling: Sampling, *, threads: int | None = None,
                log_dir: str = "results/logs/servers", where: str = "engine"):
    """Build the engine named by ``cfg["type"]`` from its options.

    ``threads`` (the job's CPU threads) is used by in-process engines; ``log_dir`` holds the logs
    of servers an engine launches.
    """
    return ENGINES.build(cfg, where, model=model, adapter=adapter, sampling=sampling, threads=threads,
                         log_dir=log_dir)

