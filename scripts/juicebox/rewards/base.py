"""What every reward shares: the ``REWARDS`` registry, :class:`Reward` and its options,
:class:`RewardContext`, :class:`CombinedReward` (every reward of a config, weighted and summed) and
the helpers the reward types use.

The reward types themselves are modules of this package, registered when :mod:`juicebox.rewards`
is imported.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..records import prompt_messages as record_prompt_messages
from ..registry import Registry
from ..spec import ConfigError, Options, option

log = logging.getLogger("juicebox")

REWARDS = Registry("reward")
register = REWARDS.register

Scores = list[list[tuple[float | None, dict]]]


def without_gold_answer(record: dict) -> list[tuple[None, dict]] | None:
    """For a record without a gold ``answer``: a None score with the reason for each of its
    samples; None when the record has one."""
    answer = record.get("answer")
    if answer is None or not str(answer).strip():
        return [(None, {"reason": "the prompt has no gold answer"}) for _ in record.get("samples") or []]
    return None


@dataclass(frozen=True)
class RewardContext:
    """What every reward may need from the run: model paths, device, threads, seed, log folder.

    ``policy_model`` (+ ``policy_adapter``) is the model whose samples are scored; ``base_model``
    is the model it started from (dpo_implicit's defaults for its reward and reference models).
    ``cache_dir``: where a reward may keep what it asked models, so that a resumed shard need not
    ask again (None: nowhere). ``device`` None means CUDA when available, else CPU. ``dtype`` is
    the default load dtype of model rewards ("auto": as saved).
    """

    policy_model: str | None = None
    policy_adapter: str | None = None
    base_model: str | None = None
    device: str | None = None
    dtype: str = "auto"
    threads: int | None = None
    seed: int = 0
    log_dir: str | None = None
    cache_dir: str | None = None

    def torch_device(self) -> str:
        """The device model rewards run on."""
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def set_threads(self) -> None:
        """Limit torch's CPU threads to the rule's ``threads`` (if given)."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def to_dict(self) -> dict:
        """Plain dict for provenance."""
        return asdict(self)


@dataclass(frozen=True)
class RewardOptions(Options):
    """Keys every reward takes (CombinedReward reads name and weight)."""

    name: str | None = option(None, "Name in the scored records' `rewards` (null: the type).")
    weight: float = option(1.0, "Weight in the combined reward.")
    tasks: list[str] | None = option(None, "Record tasks the reward applies to (null: the type's default).")

    def check(self) -> None:
        """The weight is finite."""
        if not math.isfinite(self.weight):
            raise ValueError(f"weight must be a finite number, found {self.weight!r}")


class Reward:
    """A reward type. Subclasses set ``default_tasks`` and implement ``score_applicable``.

    ``tasks``: the record tasks it applies to (None: every task). ``score`` answers every record
    it is given; records of other tasks get (None, {"reason": ...}) for each sample, the others
    go to ``score_applicable`` together, in one call. ``runs_model``: whether scoring runs a model
    (its shard jobs then ask for a GPU).
    """

    Options = RewardOptions
    type: str = ""
    default_tasks: tuple[str, ...] | None = None
    runs_model: bool = False
    # Keys of a sample's details that CombinedReward also copies into ``rewards`` as "<name>.<key>".
    rank_keys: tuple[str, ...] = ()

    def __init__(self, options: RewardOptions | None = None, context: RewardContext | None = None) -> None:
        self.options = options or self.Options()
        self.context = context or RewardContext()
        tasks = self.options.tasks if self.options.tasks is not None else self.default_tasks
        self.tasks = list(tasks) if tasks is not None else None

    def applies(self, task: str | None) -> bool:
        """Whether this reward scores samples of ``task``."""
        return self.tasks is None or task in self.tasks

    def score(self, records: list[dict]) -> Scores:
        """(value, details) for every sample of every record, in the records' order."""
        out: Scores = [[] for _ in records]
        todo = []
        for i, record in enumerate(records):
            samples = record.get("samples") or []
            if self.applies(record.get("task")):
                todo.append(i)
            else:
                out[i] = [(None, {"reason": f"{self.type} does not apply to task {record.get('task')!r}"})
                          for _ in samples]
        if todo:
            scored = self.score_applicable([records[i] for i in todo])
            if len(scored) != len(todo):
                raise RuntimeError(f"{self.type}: scored {len(scored)} records, expected {len(todo)}")
            for i, row in zip(todo, scored):
                n = len(records[i].get("samples") or [])
                if len(row) != n:
                    raise RuntimeError(f"{self.type}: prompt {records[i].get('id')}: {len(row)} scores "
                                       f"for {n} samples")
                out[i] = [_checked(value, details) for value, details in row]
        return out

    def score_applicable(self, records: list[dict]) -> Scores:
        """Score records this reward applies to (all in one call)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The type's own config keys and their values (no secrets)."""
        return {}

    def provenance(self) -> dict:
        """Type, tasks and config keys: enough to tell what scored the samples."""
        return {"type": self.type, "tasks": self.tasks, **self.settings()}

    def close(self) -> None:
        """Release models, processes and the like (nothing by default)."""


def _checked(value: Any, details: dict) -> tuple[float | None, dict]:
    """A value as float or None; NaN and infinities become None with the reason."""
    if value is None:
        return None, details
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"reward value must be a number or None, found {value!r}")
    value = float(value)
    if not math.isfinite(value):
        return None, {**details, "reason": f"reward value is {value}"}
    return value, details


def make_reward(spec: dict, context: RewardContext | None = None, where: str = "rewards") -> Reward:
    """The reward a config entry names, built from its options."""
    return REWARDS.build(spec, where, context=context)


def reward_name(options: RewardOptions, kind: str) -> str:
    """The name a reward's values go under: its ``name``, else its type."""
    return options.name or kind


def check_names(specs: list[dict], where: str = "rewards.functions") -> None:
    """Raise ConfigError when two rewards of a list would write under the same name."""
    seen: dict[str, int] = {}
    for position, spec in enumerate(specs):
        name = spec.get("name") or spec.get("type")
        if name in seen:
            raise ConfigError(f"{where}[{position}]: name {name!r} is used twice (also by [{seen[name]}]); "
                            "give one of them a `name:`")
        seen[name] = position


class CombinedReward:
    """Every reward of a config list, weighted and summed per sample (see the module doc)."""

    def __init__(self, specs: list[dict], context: RewardContext | None = None) -> None:
        if not specs:
            raise ValueError("rewards: the list is empty; give at least one reward")
        check_names(specs)
        self.entries: list[tuple[str, float, Reward]] = []
        for position, spec in enumerate(specs):
            reward = make_reward(spec, context, f"rewards.functions[{position}]")
            self.entries.append((reward_name(reward.options, reward.type), reward.options.weight, reward))

    def score_records(self, records: list[dict]) -> list[dict]:
        """The records with ``reward``, ``rewards``, ``details`` and ``reward_reason`` on every sample."""
        scores = {}
        for name, _, reward in self.entries:
            start = time.monotonic()
            scores[name] = reward.score(records)
            values = [v for row in scores[name] for v, _ in row]
            log.info("reward %s (%s): %d samples, %d without a value, %.1f s", name, reward.type, len(values),
                     sum(v is None for v in values), time.monotonic() - start)
        out = []
        for i, record in enumerate(records):
            samples = []
            for j, sample in enumerate(record.get("samples") or []):
                samples.append({**sample, **self._combine(record.get("task"), {n: s[i][j] for n, s in scores.items()})})
            out.append({**record, "samples": samples})
        return out

    def _combine(self, task: str | None, scored: dict[str, tuple[float | None, dict]]) -> dict:
        rewards, details, reasons = {}, {}, []
        total, applied = 0.0, False
        for name, weight, reward in self.entries:
            if not reward.applies(task):
                continue
            applied = True
            value, info = scored[name]
            rewards[name] = value
            details[name] = info
            for key in reward.rank_keys:
                if key in info:
                    rewards[f"{name}.{key}"] = info[key]
            if value is None:
                reasons.append(f"{name}: {info.get('reason', 'no value')}")
            else:
                total += weight * value
        if not applied:
            reasons.append(f"no reward applies to task {task!r}")
        return {"reward": None if reasons else total, "rewards": rewards, "details": details,
                "reward_reason": "; ".join(reasons) or None}

    def provenance(self) -> list[dict]:
        """Each reward's name, weight and config (no secrets)."""
        return [{"name": name, "weight": weight, **reward.provenance()} for name, weight, reward in self.entries]

    def close(self) -> None:
        """Release every reward's models and processes."""
        for _, _, reward in self.entries:
            reward.close()


def prompt_messages(record: dict) -> list[dict]:
    """The record's prompt as chat messages (a text prompt becomes one user turn)."""
    prompt = record.get("prompt")
    if not isinstance(prompt, (str, list)):
        raise ValueError(f"prompt {record.get('id')}: 'prompt' must be text or chat messages, found {prompt!r}")
    return record_prompt_messages(prompt)

